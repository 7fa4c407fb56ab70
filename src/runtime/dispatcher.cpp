#include "runtime/dispatcher.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "core/error.h"

namespace tapml {

// The bytes behind one or more values. A valid copy may sit on the host (weights and step
// inputs start there) and on any number of backends; a write on one backend makes that the
// only valid copy.
struct Dispatcher::Storage {
  Dispatcher* owner = nullptr;
  uint32_t refs = 0;
  StorageKind kind = StorageKind::Activation;
  std::string name;
  size_t bytes = 0;
  Tensor host;        // a valid host copy, when not empty
  bool zero = false;  // contents are all zero and exist nowhere yet
  // Backends holding a valid copy (usually one; the first is read from).
  std::vector<std::pair<Backend*, BufferId>> copies;
  // A weight's copy on the last backend asked (the pool keeps it while the pool lives).
  Backend* weight_on = nullptr;
  DeviceTensor weight_copy;

  ~Storage() { drop_copies(nullptr); }
  const BufferId* copy_on(const Backend* b) const {
    for (const auto& [on, id] : copies)
      if (on == b) return &id;
    return nullptr;
  }
  // Frees every copy but the one on `keep`.
  void drop_copies(const Backend* keep) noexcept {
    size_t kept = 0;
    for (auto& c : copies) {
      if (c.first == keep) {
        copies[kept++] = c;
        continue;
      }
      try {
        c.first->free(c.second);
      } catch (...) {
      }  // a dead remote device must not abort teardown
    }
    copies.resize(kept);
  }
  // Keeps only the copy on `keep` (after it was written there).
  void written_on(Backend* keep) {
    drop_copies(keep);
    host = Tensor();
    zero = false;
  }
};

Dispatcher::StorageRef::StorageRef(Storage* s) : s_(s) {
  if (s_) ++s_->refs;
}
Dispatcher::StorageRef::StorageRef(const StorageRef& o) : s_(o.s_) {
  if (s_) ++s_->refs;
}
void Dispatcher::StorageRef::reset() {
  Storage* s = std::exchange(s_, nullptr);
  if (!s || --s->refs > 0) return;
  s->drop_copies(nullptr);
  s->host = Tensor();
  s->zero = false;
  s->weight_on = nullptr;
  // Kept for reuse, with its name's and copy list's capacity; the dispatcher frees them.
  try {
    s->owner->spare_storage_.emplace_back(s);
  } catch (...) {
    delete s;
  }
}

Dispatcher::StorageRef Dispatcher::new_storage(StorageKind kind, const std::string& name,
                                               size_t bytes) {
  std::unique_ptr<Storage> s;
  if (!spare_storage_.empty()) {
    s = std::move(spare_storage_.back());
    spare_storage_.pop_back();
  } else {
    s = std::make_unique<Storage>();
    s->owner = this;
  }
  s->kind = kind;
  s->name = name;
  s->bytes = bytes;
  return StorageRef(s.release());
}

Dispatcher::Dispatcher(const std::map<std::string, Tensor>& weights, Placement placement,
                       DevicePool& pool)
    : weights_(weights), placement_(std::move(placement)), pool_(pool) {}

Dispatcher::~Dispatcher() {
  // Values hold buffers on backends: release them while the backends still exist.
  values_.clear();
  weight_vals_.clear();
}

Backend& Dispatcher::backend(const std::string& uri) { return *open(uri).first; }

std::pair<Backend*, TransferStats*> Dispatcher::open(const std::string& uri) {
  if (last_.first && uri == last_uri_) return last_;
  Backend& b = pool_.open(uri);
  last_ = {&b, &stats_[uri]};  // map entries stay where they are
  last_uri_ = uri;
  return last_;
}

Val Dispatcher::add_value(Value v) {
  values_.push_back(std::move(v));
  Val id{uint32_t(values_.size())};
  if (values_.back().step_scoped) step_values_.push_back(id.id);
  return id;
}

Dispatcher::Value& Dispatcher::value(Val v) {
  TAPML_REQUIRE(v.id >= 1 && v.id <= values_.size() && values_[v.id - 1].storage,
                "internal: use of a freed or unknown value " + std::to_string(v.id));
  return values_[v.id - 1];
}
const Dispatcher::Value& Dispatcher::value(Val v) const {
  return const_cast<Dispatcher*>(this)->value(v);
}

TensorType Dispatcher::type(Val v) const { return value(v).type; }

Val Dispatcher::weight(const std::string& name) {
  if (auto it = weight_vals_.find(name); it != weight_vals_.end()) return it->second;
  auto it = weights_.find(name);
  TAPML_REQUIRE(it != weights_.end(), "the model has no weight '" + name + "'");
  StorageRef s = new_storage(StorageKind::Weight, name, it->second.nbytes());
  s->host = it->second;
  Val v = add_value({{it->second.dtype(), it->second.shape()}, s, 0, false});
  weight_vals_[name] = v;
  return v;
}

Val Dispatcher::input(const std::string& name, Tensor data) {
  StorageRef s = new_storage(StorageKind::Input, name, data.nbytes());
  TensorType t{data.dtype(), data.shape()};
  s->host = std::move(data);
  return add_value({t, s, 0, true});
}

Val Dispatcher::persistent(const std::string& name, DType dtype, Shape shape) {
  StorageRef s = new_storage(StorageKind::Persistent, name, tensor_bytes(dtype, shape));
  s->zero = true;
  return add_value({{dtype, std::move(shape)}, s, 0, false});
}

Val Dispatcher::rows(Val v, int64_t row_begin, int64_t n) {
  Value src = value(v);
  TAPML_REQUIRE(
      src.type.shape.rank() >= 1 && row_begin >= 0 && n >= 0 && row_begin + n <= src.type.shape[0],
      "rows " + std::to_string(row_begin) + "+" + std::to_string(n) + " outside " +
          src.type.shape.str());
  // Bytes per outermost row; a block type's rows hold whole blocks, so this divides exactly.
  TAPML_REQUIRE(
      src.type.shape.rank() >= 2 || !is_block(src.type.dtype),
      "rows of a 1-D " + std::string(dtype_name(src.type.dtype)) + " value would cut blocks");
  size_t row_bytes = tensor_bytes(src.type.dtype, src.type.shape) /
                     size_t(std::max<int64_t>(src.type.shape[0], 1));
  Value view = src;
  view.type.shape[0] = n;
  view.offset += size_t(row_begin) * row_bytes;
  view.step_scoped = true;
  return add_value(std::move(view));
}

Val Dispatcher::reshape(Val v, Shape shape) {
  Value src = value(v);
  TAPML_REQUIRE(shape.numel() == src.type.shape.numel(),
                "reshape of " + describe(src.type) + " to " + shape.str() + ": the sizes differ");
  for (size_t i = 0; i < shape.rank(); ++i)
    TAPML_REQUIRE(shape[i] >= 0, "reshape to " + shape.str() + ": a negative size");
  Value view = src;
  view.type.shape = std::move(shape);
  view.step_scoped = true;
  return add_value(std::move(view));
}

void Dispatcher::end_step() {
  step_call_ = 0;
  for (uint32_t id : step_values_) values_[id - 1].storage.reset();
  step_values_.clear();
  // Drop freed slots at the tail so ids stay small across many steps.
  while (!values_.empty() && !values_.back().storage) values_.pop_back();
}

DeviceTensor Dispatcher::place(Val v, Backend& b, TransferStats& st) {
  Value& val = value(v);
  Storage& s = *val.storage;
  if (s.kind == StorageKind::Weight) {
    // The device keeps the pool's copy; this dispatcher owns none.
    if (s.weight_on != &b) {
      bool uploaded = false;
      s.weight_copy = pool_.weight(b, s.host, &uploaded);
      s.weight_on = &b;
      if (uploaded) {
        st.weight_uploads++;
        st.weight_bytes += int64_t(s.bytes);
      }
    }
    const DeviceTensor& t = s.weight_copy;
    return DeviceTensor{t.buffer, t.offset + val.offset, val.type.dtype, val.type.shape};
  }
  const BufferId* have = s.copy_on(&b);
  if (!have) {
    BufferId id = b.alloc(s.bytes);
    try {
      if (!s.host.empty()) {
        b.write(id, 0, s.host.bytes(), s.bytes);
        st.input_uploads++;
        st.input_bytes += int64_t(s.bytes);
      } else if (s.zero) {
        std::vector<std::byte> zeros(std::min<size_t>(s.bytes, size_t(1) << 22));
        for (size_t off = 0; off < s.bytes; off += zeros.size())
          b.write(id, off, zeros.data(), std::min(zeros.size(), s.bytes - off));
      } else {
        TAPML_REQUIRE(!s.copies.empty(), "internal: value '" + s.name + "' holds no data anywhere");
        auto [src, src_id] = s.copies.front();
        std::vector<std::byte> tmp(s.bytes);
        src->sync();
        src->read(src_id, 0, tmp.data(), s.bytes);
        b.write(id, 0, tmp.data(), s.bytes);
        st.activation_moves++;
        st.activation_bytes += int64_t(s.bytes);
      }
      s.copies.emplace_back(&b, id);
    } catch (...) {
      b.free(id);
      throw;
    }
    have = &s.copies.back().second;
  }
  return DeviceTensor{*have, val.offset, val.type.dtype, val.type.shape};
}

std::pair<size_t, size_t> Dispatcher::alias_of(const std::vector<Val>& inputs, size_t i) const {
  const Value& v = value(inputs[i]);
  for (size_t j = 0; j < i; ++j)
    if (value(inputs[j]).storage == v.storage) return {j, v.offset};
  return {i, v.offset};
}

bool Dispatcher::plan_matches(const CallPlan& plan, const std::vector<Val>& inputs) const {
  if (plan.in_types.size() != inputs.size()) return false;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (!(value(inputs[i]).type == plan.in_types[i]) || alias_of(inputs, i) != plan.in_alias[i])
      return false;
  return true;
}

std::vector<Val> Dispatcher::call(const Site& where, Op op, const Attrs& attrs,
                                  const std::vector<Val>& inputs) {
  const size_t at = step_call_++;
  if (plans_.size() <= at) plans_.resize(at + 1);
  CallPlan& plan = plans_[at];
  OpCall& c = plan.call;
  if (!(plan.valid && c.op == op && plan.site == where && c.attrs == attrs &&
        plan_matches(plan, inputs))) {
    plan.valid = false;
    plan.site = where;
    c.op = op;
    c.attrs = attrs;
    c.site = where.str();
    plan.in_types.clear();
    plan.in_alias.clear();
    for (size_t i = 0; i < inputs.size(); ++i) {
      plan.in_types.push_back(type(inputs[i]));
      plan.in_alias.push_back(alias_of(inputs, i));
    }
    plan.uri = &placement_.uri_for(c.site, op);
    try {
      plan.out_types = infer_outputs(op, plan.in_types, attrs);
    } catch (const Error& e) {
      throw Error(c.site + ": " + e.what());
    }
  }
  const bool checked = plan.valid;
  const std::string& site = c.site;
  const std::string& uri = *plan.uri;
  const OpDef& def = op_def(op);
  const std::vector<TensorType>& out_types = plan.out_types;
  c.inputs.clear();
  c.outputs.clear();

  auto [bp, st] = open(uri);
  Backend& b = *bp;
  for (Val v : inputs) c.inputs.push_back(place(v, b, *st));

  std::vector<Val> outputs;
  outputs.reserve(out_types.size());
  for (size_t i = 0; i < out_types.size(); ++i) {
    int alias = def.inplace_of[i];
    if (alias >= 0) {
      Value shared = value(inputs[size_t(alias)]);
      shared.step_scoped = true;
      outputs.push_back(add_value(std::move(shared)));
      c.outputs.push_back(c.inputs[size_t(alias)]);
    } else {
      StorageRef s = new_storage(StorageKind::Activation, site,
                                 tensor_bytes(out_types[i].dtype, out_types[i].shape));
      BufferId id = b.alloc(s->bytes);
      s->copies.emplace_back(&b, id);
      outputs.push_back(add_value({out_types[i], s, 0, true}));
      c.outputs.push_back(DeviceTensor{id, 0, out_types[i].dtype, out_types[i].shape});
    }
  }

  Support sup = checked ? Support::yes() : b.supports(c);
  if (!sup.ok) {
    std::string why =
        site + ": backend '" + uri + "' cannot run " + std::string(def.name) + ": " + sup.reason;
    // Few backends have block-type kernels yet; the rest of the model can still run here.
    for (const DeviceTensor& t : c.inputs)
      if (is_block(t.dtype) && uri != "ref") {
        why += " (a placement rule such as '" + std::string(def.name) + "=ref' runs these on ref)";
        break;
      }
    throw Error(why);
  }
  plan.valid = true;

  // The event copies the call's site and values: made only for observers.
  const uint64_t index = next_call_++;
  std::optional<CallEvent> ev;
  if (!observers_.empty()) ev = CallEvent{index, where, phase_, uri, &c, inputs, outputs};
  for (CallObserver* o : observers_) o->before_call(*ev, *this);
  b.run_supported(c);
  st->calls++;
  for (size_t i = 0; i < outputs.size(); ++i)
    if (def.inplace_of[i] >= 0) value(outputs[i]).storage->written_on(&b);
  for (CallObserver* o : observers_) o->after_call(*ev, *this);
  return outputs;
}

void Dispatcher::read_into(const Value& val, void* dst, size_t bytes) {
  const Storage& s = *val.storage;
  if (!s.host.empty()) {
    std::memcpy(dst, s.host.bytes() + val.offset, bytes);
  } else if (s.zero) {
    std::memset(dst, 0, bytes);
  } else {
    TAPML_REQUIRE(!s.copies.empty(), "internal: value '" + s.name + "' holds no data anywhere");
    auto [b, id] = s.copies.front();
    b->sync();
    b->read(id, val.offset, dst, bytes);
  }
}

Tensor Dispatcher::read(Val v) {
  const Value& val = value(v);
  Tensor out(val.type.dtype, val.type.shape);
  read_into(val, out.mutable_bytes(), out.nbytes());
  return out;
}

std::vector<float> Dispatcher::read_f32(Val v) {
  const Value& val = value(v);
  if (val.type.dtype != DType::F32) return read(v).to_f32();
  std::vector<float> out(size_t(val.type.shape.numel()));
  read_into(val, out.data(), out.size() * sizeof(float));
  return out;
}

std::string Dispatcher::weight_name(Val v) const {
  const Value& val = value(v);
  const Storage& s = *val.storage;
  const bool whole = val.offset == 0 && val.type.shape == s.host.shape();
  return s.kind == StorageKind::Weight && whole ? s.name : std::string();
}

const Tensor& Dispatcher::weight_tensor(Val v) const {
  const Value& val = value(v);
  TAPML_REQUIRE(!weight_name(v).empty(),
                "internal: value " + std::to_string(v.id) + " is not a whole weight");
  return val.storage->host;
}

void Dispatcher::remove_observer(CallObserver* o) {
  observers_.erase(std::remove(observers_.begin(), observers_.end(), o), observers_.end());
}

}  // namespace tapml
