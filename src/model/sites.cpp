#include "model/sites.h"

#include <algorithm>

#include "core/error.h"
#include "core/pattern.h"

namespace tapml {

namespace {

// An emitter that keeps types and nothing else.
class TypeEmitter final : public Emitter {
 public:
  explicit TypeEmitter(const ModelFile& m) : model_(m) {}

  Val weight(const std::string& name) override {
    auto it = model_.weights.find(name);
    TAPML_REQUIRE(it != model_.weights.end(), "the model has no weight '" + name + "'");
    return add({it->second.dtype(), it->second.shape()});
  }
  Val input(const std::string&, Tensor data) override { return add({data.dtype(), data.shape()}); }
  Val rows(Val v, int64_t, int64_t n) override {
    TensorType t = type(v);
    t.shape[0] = n;
    return add(t);
  }
  Val reshape(Val v, Shape shape) override {
    TensorType t = type(v);
    TAPML_REQUIRE(shape.numel() == t.shape.numel(),
                  "reshape of " + describe(t) + " to " + shape.str() + ": the sizes differ");
    t.shape = std::move(shape);
    return add(t);
  }
  std::vector<Val> call(const Site& site, Op op, const Attrs& attrs,
                        const std::vector<Val>& inputs) override {
    std::vector<TensorType> in;
    for (Val v : inputs) in.push_back(type(v));
    std::vector<Val> out;
    for (const TensorType& t : infer_outputs(op, in, attrs)) out.push_back(add(t));
    if (std::none_of(sites_.begin(), sites_.end(),
                     [&](const SiteCall& s) { return s.site == site; }))
      sites_.push_back({site, op});
    return out;
  }
  TensorType type(Val v) const override { return types_.at(v.id - 1); }

  Val add(TensorType t) {
    types_.push_back(std::move(t));
    return Val{uint32_t(types_.size())};
  }
  std::vector<SiteCall> sites_;

 private:
  const ModelFile& model_;
  std::vector<TensorType> types_;
};

}  // namespace

std::vector<SiteCall> model_sites(const ModelFile& model) {
  const Architecture& arch = architecture(model.arch);
  TypeEmitter e(model);
  const int context = 4;
  std::vector<Val> cache;
  for (const CacheSpec& c : arch.cache(model.config, context, DType::F32))  // sites: any dtype
    cache.push_back(e.add({c.dtype, c.shape}));
  const std::vector<int32_t> prefill = {0, 0}, decode = {0};
  arch.forward(model.config, e, cache, prefill, 0, true);
  arch.forward(model.config, e, cache, decode, 2, false);
  return e.sites_;
}

std::string site_list_text(const std::vector<SiteCall>& sites) {
  // The blocks repeat one set of roles: say it once, with the range of layers.
  std::vector<std::string> before, roles, after;
  int last_layer = -1;
  for (const SiteCall& s : sites) {
    if (s.site.layer < 0) {
      (last_layer < 0 ? before : after).push_back(s.site.role);
      continue;
    }
    last_layer = std::max(last_layer, s.site.layer);
    if (std::find(roles.begin(), roles.end(), s.site.role) == roles.end())
      roles.push_back(s.site.role);
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string out;
    for (const std::string& x : v) out += (out.empty() ? "" : ", ") + x;
    return out;
  };
  std::string text = join(before);
  if (last_layer >= 0)
    text += std::string(text.empty() ? "" : "; ") + "blk.0 to blk." + std::to_string(last_layer) +
            " each with " + join(roles);
  if (!after.empty()) text += (text.empty() ? "" : "; ") + join(after);
  return text;
}

void check_site_pattern(const std::vector<SiteCall>& sites, const std::string& pattern,
                        const std::string& what) {
  const Pattern p(pattern, what);
  if (std::any_of(sites.begin(), sites.end(),
                  [&](const SiteCall& s) { return p.search(s.site.str()); }))
    return;
  throw UsageError(what + " '" + pattern +
                   "' matches no site of this model (sites: " + site_list_text(sites) + ")");
}

}  // namespace tapml
