#include "backend/call_fusion.h"

#include <array>

namespace tapml {

namespace {

bool same(const DeviceTensor& a, const DeviceTensor& b) {
  return a.buffer == b.buffer && a.offset == b.offset && a.nbytes() == b.nbytes();
}

bool uses(const OpCall& c, BufferId id) {
  for (const DeviceTensor& t : c.inputs)
    if (t.buffer == id) return true;
  for (const DeviceTensor& t : c.outputs)
    if (t.buffer == id) return true;
  return false;
}

// Two rope calls that can run as one launch: the same positions, frequencies and pairing,
// and b neither reads nor writes what a writes, nor writes what a reads.
bool rope_pairs(const OpCall& a, const OpCall& b) {
  for (const char* k : {"head_dim", "rope_dim", "base", "pairing"})
    if (a.attrs.get(k) != b.attrs.get(k)) return false;
  if (a.inputs.size() != b.inputs.size() || !same(a.inputs[1], b.inputs[1])) return false;
  if (a.inputs.size() > 2 && !same(a.inputs[2], b.inputs[2])) return false;
  return !overlap(b.inputs[0], a.outputs[0]) && !overlap(b.outputs[0], a.outputs[0]) &&
         !overlap(b.outputs[0], a.inputs[0]) && !overlap(b.outputs[0], a.inputs[1]);
}

// An output that is exactly one of the inputs, or touches none of them.
bool in_place_or_apart(const DeviceTensor& out, const DeviceTensor& a, const DeviceTensor& b) {
  return same(out, a) || same(out, b) || (!overlap(out, a) && !overlap(out, b));
}

}  // namespace

const DeviceTensor& FusedGroup::residual() const {
  if (add) return same(add->inputs[1], down->outputs[0]) ? add->inputs[0] : add->inputs[1];
  return same(tail.inputs[1], matmuls[0].outputs[0]) ? tail.inputs[0] : tail.inputs[1];
}

const DeviceTensor& AttentionChain::residual() const {
  return same(add->inputs[1], proj->outputs[0]) ? add->inputs[0] : add->inputs[1];
}

namespace {

// Whether t overlaps an input (reads) or an output (writes) of any of the calls.
template <class Calls>
bool reads_any(const Calls& calls, const DeviceTensor& t) {
  for (const OpCall* c : calls)
    for (const DeviceTensor& in : c->inputs)
      if (overlap(t, in)) return true;
  return false;
}
template <class Calls>
bool writes_any(const Calls& calls, const DeviceTensor& t) {
  for (const OpCall* c : calls)
    for (const DeviceTensor& out : c->outputs)
      if (overlap(t, out)) return true;
  return false;
}

// The four calls of a chain.
std::array<const OpCall*, 4> chain_calls(const AttentionChain& ch) {
  return {&ch.rope_q, &ch.rope_k, &ch.kv_store, &ch.attention};
}
bool chain_reads(const AttentionChain& ch, const DeviceTensor& t) {
  return reads_any(chain_calls(ch), t);
}
bool chain_writes(const AttentionChain& ch, const DeviceTensor& t) {
  return writes_any(chain_calls(ch), t);
}

// The calls of a group without its down projection and add: the norm, the matmuls (at most
// three), the tail. Asked on every offer while a group is held, so kept off the heap.
struct GroupCalls {
  std::array<const OpCall*, 5> calls{};
  size_t n = 0;
  const OpCall* const* begin() const { return calls.data(); }
  const OpCall* const* end() const { return calls.data() + n; }
};
GroupCalls group_calls(const FusedGroup& g) {
  GroupCalls out;
  if (g.norm) out.calls[out.n++] = &*g.norm;
  for (const OpCall& m : g.matmuls) out.calls[out.n++] = &m;
  if (g.epilogue != FusedGroup::None) out.calls[out.n++] = &g.tail;
  return out;
}
bool group_reads(const FusedGroup& g, const DeviceTensor& t) {
  return reads_any(group_calls(g), t);
}
bool group_writes(const FusedGroup& g, const DeviceTensor& t) {
  return writes_any(group_calls(g), t);
}

}  // namespace

OpCall CallFusion::copy_of(const OpCall& c) {
  if (spare_.empty()) return c;
  OpCall o = std::move(spare_.back());
  spare_.pop_back();
  o = c;
  return o;
}

void CallFusion::recycle(OpCall& c) {
  constexpr size_t kMaxSpare = 16;
  if (spare_.size() >= kMaxSpare) return;
  try {
    spare_.push_back(std::move(c));
  } catch (...) {
  }  // called after launches: running out of memory here must not lose held calls
}

void CallFusion::recycle(std::optional<OpCall>& c) {
  if (c) recycle(*c);
  c.reset();
}

void CallFusion::recycle(FusedGroup& g) {
  recycle(g.norm);
  for (OpCall& m : g.matmuls) recycle(m);
  g.matmuls.clear();
  if (matmuls_.empty() && matmuls_.capacity() < g.matmuls.capacity()) matmuls_.swap(g.matmuls);
  if (g.epilogue != FusedGroup::None) recycle(g.tail);
  recycle(g.down);
  recycle(g.add);
}

bool CallFusion::norm_feeds_group() const {
  return norm_ && !matmuls_.empty() && same(norm_->outputs[0], matmuls_[0].inputs[0]);
}

// Every group of a fused launch reads the matmuls' input (and the norm's input and output),
// so no output of the launch may touch them.
bool CallFusion::touches_shared(const DeviceTensor& out) const {
  if (!matmuls_.empty() && overlap(out, matmuls_[0].inputs[0])) return true;
  return norm_feeds_group() && (overlap(out, norm_->inputs[0]) || overlap(out, norm_->outputs[0]));
}

bool CallFusion::holds(BufferId id) const {
  if (ffn_) {
    for (const OpCall* c : group_calls(*ffn_))
      if (uses(*c, id)) return true;
    if (ffn_->down && uses(*ffn_->down, id)) return true;
  }
  if (chain_) {
    for (const OpCall* c : chain_calls(*chain_))
      if (uses(*c, id)) return true;
    if (chain_->proj && uses(*chain_->proj, id)) return true;
  }
  if ((norm_ && uses(*norm_, id)) || (rope_ && uses(*rope_, id))) return true;
  if ((rope_k_ && uses(*rope_k_, id)) || (kv_ && uses(*kv_, id))) return true;
  for (const OpCall& c : matmuls_)
    if (uses(c, id)) return true;
  return false;
}

FusedGroup CallFusion::take_group(FusedGroup::Epilogue e, const OpCall* tail) {
  FusedGroup g;
  g.epilogue = e;
  if (norm_feeds_group()) {
    g.norm = std::move(norm_);
    norm_.reset();
  }
  g.matmuls = std::move(matmuls_);
  matmuls_.clear();
  if (tail) g.tail = copy_of(*tail);
  return g;
}

void CallFusion::launch(FusedGroup::Epilogue e, const OpCall* tail) {
  FusedGroup g = take_group(e, tail);
  hooks_.launch_group(g);
  recycle(g);
}

void CallFusion::release_chain() {
  AttentionChain ch = std::move(*chain_);
  chain_.reset();
  std::optional<OpCall> proj = std::move(ch.proj);
  ch.proj.reset();
  ch.add.reset();
  hooks_.launch_attention(ch);
  if (proj && !offer(*proj)) hooks_.run(*proj);
}

void CallFusion::release_ffn() {
  FusedGroup g = std::move(*ffn_);
  ffn_.reset();
  std::optional<OpCall> down = std::move(g.down);
  g.down.reset();
  g.add.reset();
  hooks_.launch_group(g);
  recycle(g);
  if (down && !offer(*down)) hooks_.run(*down);
  recycle(down);
}

void CallFusion::flush() {
  if (chain_) release_chain();
  if (ffn_) release_ffn();
  if (!matmuls_.empty()) launch(FusedGroup::None, nullptr);
  if (norm_) {
    OpCall c = std::move(*norm_);
    norm_.reset();
    hooks_.run(c);
    recycle(c);
  }
  if (rope_) {
    OpCall c = std::move(*rope_);
    rope_.reset();
    std::optional<OpCall> k = std::move(rope_k_);
    rope_k_.reset();
    hooks_.launch_rope(c, k ? &*k : nullptr);
    recycle(c);
    recycle(k);
  }
  if (kv_) {
    OpCall c = std::move(*kv_);
    kv_.reset();
    hooks_.run(c);
    recycle(c);
  }
}

// The held rope pair and kv_store, and this attention, make a chain: attention's q is the
// rotated q, its keys and values the first rows of the caches kv_store wrote, kv_store's k
// the rotated k; one query row; and no output touches what another part of the chain reads
// or writes (each head of the launch reads its inputs while other heads write).
bool CallFusion::chain_fits(const OpCall& a) const {
  const OpCall &q = *rope_, &k = *rope_k_, &kv = *kv_;
  auto starts = [](const DeviceTensor& view, const DeviceTensor& whole) {
    return view.buffer == whole.buffer && view.offset == whole.offset &&
           view.nbytes() <= whole.nbytes();
  };
  if (!same(a.inputs[0], q.outputs[0]) || !starts(a.inputs[1], kv.outputs[0]) ||
      !starts(a.inputs[2], kv.outputs[1]) || a.inputs[0].shape[0] != 1)
    return false;
  const DeviceTensor* read[] = {&q.inputs[0], &q.inputs[1], &k.inputs[0], &kv.inputs[3],
                                q.inputs.size() > 2 ? &q.inputs[2] : &q.inputs[1]};
  const DeviceTensor* written[] = {&q.outputs[0], &k.outputs[0], &kv.outputs[0], &kv.outputs[1],
                                   &a.outputs[0]};
  for (const DeviceTensor* w : written)
    for (const DeviceTensor* r : read)
      if (overlap(*w, *r)) return false;
  for (const DeviceTensor* w : written)
    for (const DeviceTensor* o : written)
      if (w != o && overlap(*w, *o)) return false;
  return true;
}

// A matmul of the held chain's attention output whose output and weight touch nothing the
// chain writes (its heads read the weight while others write), nor its output anything the
// chain reads.
bool CallFusion::proj_fits(const OpCall& m) const {
  const AttentionChain& ch = *chain_;
  const DeviceTensor& y = m.outputs[0];
  return !ch.proj && same(m.inputs[0], ch.attention.outputs[0]) && !chain_reads(ch, y) &&
         !chain_writes(ch, y) && !chain_writes(ch, m.inputs[1]);
}

// An add of the held projection's output y and a residual r that the chain does not write,
// its output y, r, or apart from both and from everything the chain and projection touch.
bool CallFusion::add_fits(const OpCall& c) const {
  const AttentionChain& ch = *chain_;
  const DeviceTensor& y = ch.proj->outputs[0];
  const int which = same(c.inputs[1], y) ? 1 : same(c.inputs[0], y) ? 0 : -1;
  if (which < 0) return false;
  const DeviceTensor& r = c.inputs[size_t(1 - which)];
  const DeviceTensor& out = c.outputs[0];
  return !overlap(r, y) && !chain_writes(ch, r) && in_place_or_apart(out, y, r) &&
         !chain_reads(ch, out) && !chain_writes(ch, out) && !overlap(out, ch.proj->inputs[1]);
}

// A one-row matmul of the held swiglu group's output whose output and weight touch nothing the
// group writes (parts of the launch read the weight while others write), nor its output
// anything the group reads.
bool CallFusion::down_fits(const OpCall& m) const {
  const FusedGroup& g = *ffn_;
  const DeviceTensor& y = m.outputs[0];
  return !g.down && same(m.inputs[0], g.tail.outputs[0]) && m.inputs[0].shape[0] == 1 &&
         !group_reads(g, y) && !group_writes(g, y) && !group_writes(g, m.inputs[1]);
}

// An add of the held down projection's output y and a residual r that the group does not
// write, its output y, r, or apart from both and from everything the group and the down
// projection touch.
bool CallFusion::ffn_add_fits(const OpCall& c) const {
  const FusedGroup& g = *ffn_;
  const DeviceTensor& y = g.down->outputs[0];
  const int which = same(c.inputs[1], y) ? 1 : same(c.inputs[0], y) ? 0 : -1;
  if (which < 0) return false;
  const DeviceTensor& r = c.inputs[size_t(1 - which)];
  const DeviceTensor& out = c.outputs[0];
  return !overlap(r, y) && !group_writes(g, r) && in_place_or_apart(out, y, r) &&
         !group_reads(g, out) && !group_writes(g, out) && !overlap(out, g.down->inputs[1]);
}

bool CallFusion::offer(const OpCall& c) {
  if (ffn_) {
    if (c.op == Op::Matmul && down_fits(c)) {
      ffn_->down = copy_of(c);
      return true;
    }
    if (c.op == Op::Add && ffn_->down && ffn_add_fits(c)) {
      ffn_->add = copy_of(c);
      if (hooks_.can_launch_ffn(*ffn_)) {
        FusedGroup g = std::move(*ffn_);
        ffn_.reset();
        hooks_.launch_group(g);
        recycle(g);
        return true;
      }
      recycle(ffn_->add);
    }
    release_ffn();
  }
  if (chain_) {
    if (c.op == Op::Matmul && proj_fits(c)) {
      chain_->proj = c;
      return true;
    }
    if (c.op == Op::Add && chain_->proj && add_fits(c)) {
      chain_->add = c;
      if (hooks_.can_launch_attention(*chain_)) {
        AttentionChain ch = std::move(*chain_);
        chain_.reset();
        hooks_.launch_attention(ch);
        return true;
      }
      chain_->add.reset();
    }
    release_chain();
  }
  switch (c.op) {
    case Op::RmsNorm:
      flush();
      if (overlap(c.inputs[0], c.outputs[0]) || !hooks_.can_hold_norm(c)) return false;
      norm_ = copy_of(c);
      return true;
    case Op::Matmul: {
      const DeviceTensor& out = c.outputs[0];
      if (!matmuls_.empty()) {
        const OpCall& first = matmuls_[0];
        bool joins = matmuls_.size() < 3 && same(c.inputs[0], first.inputs[0]) &&
                     c.inputs[1].dtype == first.inputs[1].dtype && !touches_shared(out);
        for (const OpCall& m : matmuls_) joins = joins && !overlap(out, m.outputs[0]);
        if (joins && hooks_.can_hold_matmul(c, norm_feeds_group())) {
          matmuls_.push_back(copy_of(c));
          return true;
        }
        flush();
      }
      const bool after_norm = norm_ && same(norm_->outputs[0], c.inputs[0]) &&
                              !overlap(out, norm_->inputs[0]) && !overlap(out, norm_->outputs[0]) &&
                              hooks_.can_hold_matmul(c, true);
      if (!after_norm) flush();
      if (!after_norm && !hooks_.can_hold_matmul(c, false)) return false;
      matmuls_.push_back(copy_of(c));
      return true;
    }
    case Op::Swiglu:
      if (matmuls_.size() == 2 && same(c.inputs[0], matmuls_[0].outputs[0]) &&
          same(c.inputs[1], matmuls_[1].outputs[0]) && !touches_shared(c.outputs[0]) &&
          in_place_or_apart(c.outputs[0], c.inputs[0], c.inputs[1])) {
        if (hooks_.can_launch_ffn) {
          // Launched with the next call, perhaps with it and the one after.
          ffn_ = take_group(FusedGroup::Swiglu, &c);
          return true;
        }
        launch(FusedGroup::Swiglu, &c);
        return true;
      }
      flush();
      return false;
    case Op::Add: {
      if (matmuls_.size() == 1) {
        const DeviceTensor& y = matmuls_[0].outputs[0];
        const int which = same(c.inputs[1], y) ? 1 : same(c.inputs[0], y) ? 0 : -1;
        if (which >= 0) {
          const DeviceTensor& r = c.inputs[size_t(1 - which)];
          if (!overlap(r, y) && !touches_shared(c.outputs[0]) &&
              in_place_or_apart(c.outputs[0], y, r)) {
            launch(FusedGroup::Add, &c);
            return true;
          }
        }
      }
      flush();
      return false;
    }
    case Op::Rope:
      if (rope_ && !rope_k_ && rope_pairs(*rope_, c)) {
        if (hooks_.launch_attention && c.inputs[0].shape[0] == 1) {
          rope_k_ = copy_of(c);
          return true;
        }
        OpCall first = std::move(*rope_);
        rope_.reset();
        hooks_.launch_rope(first, &c);
        recycle(first);
        return true;
      }
      flush();
      rope_ = copy_of(c);
      return true;
    case Op::KvStore:
      if (rope_k_ && !kv_ && same(c.inputs[2], rope_k_->outputs[0])) {
        kv_ = copy_of(c);
        return true;
      }
      flush();
      return false;
    case Op::Attention:
      if (kv_ && chain_fits(c)) {
        AttentionChain chain{*rope_, *rope_k_, *kv_, c, std::nullopt, std::nullopt};
        if (hooks_.can_launch_attention(chain)) {
          rope_.reset();
          rope_k_.reset();
          kv_.reset();
          chain_ = std::move(chain);  // launched with the next call, perhaps with it
          return true;
        }
      }
      flush();
      return false;
    default:
      flush();
      return false;
  }
}

}  // namespace tapml
