// XLA FFI custom calls for 2-D convolutions on CPU, backed by oneDNN (issue 18). Built and loaded
// at first use by fnn/onednn.py; fnn/conv.py calls them in its CPU branch.
//
// Layouts are fnn's: images NHWC, kernels HWIO, float32, groups of 1, no dilation.
//   fnn_onednn_conv_bwd_w: (x [N,H,W,C], g [N,OH,OW,O]) -> dW [KH,KW,C,O]  (the kernel gradient)
//   fnn_onednn_conv_fwd:   (x [N,H,W,C], w [KH,KW,C,O]) -> y [N,OH,OW,O]
// Attributes (int64): kh, kw (bwd_w only: the kernel's size), stride_h, stride_w, pad_top,
// pad_left, pad_bottom, pad_right.
//
// oneDNN reads and writes the XLA image buffers in place (no copies); the weights go through a
// reorder to/from oneDNN's blocked layout (9·C·O numbers, negligible).
// Primitives are created once per shape and kept (creation JIT-compiles oneDNN's kernel).

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

namespace {

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

using Key = std::tuple<int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>;

struct Entry {
  dnnl::primitive prim;
  memory::desc src, other, out;       // what the primitive runs on
  memory::desc out_user;              // the XLA buffer's layout
  bool reorder_out = false;
  bool reorder_other = false;         // forward: weights given as HWIO, primitive wants blocked
  memory::desc other_user;
  memory::desc scratch;               // per-call scratchpad: calls may run concurrently
  std::unique_ptr<dnnl::reorder> out_reorder, other_reorder;
};

std::mutex cache_mutex;
std::map<Key, std::shared_ptr<Entry>> cache;

// XLA:CPU may run several executions of a program at once, so no primitive may share oneDNN's
// global scratchpad: each call allocates its own.
dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// oneDNN picks its weight layout (its direct JIT kernels, then a small reorder from/to HWIO)
// unless FNN_ONEDNN_HWIO_WEIGHTS=1 asks for HWIO in place (for the kernel gradient that selects
// oneDNN's im2col + GEMM kernel, measured 1.3-2x slower here).
bool BlockedWeights() {
  const char* v = std::getenv("FNN_ONEDNN_HWIO_WEIGHTS");
  return v == nullptr || v[0] != '1';
}

std::shared_ptr<Entry> BwdWeights(int64_t n, int64_t h, int64_t w, int64_t c, int64_t oh,
                                  int64_t ow, int64_t o, int64_t kh, int64_t kw, int64_t sh,
                                  int64_t sw, int64_t pt, int64_t pl, int64_t pb, int64_t pr) {
  (void)pb;
  (void)pr;
  Key key{BlockedWeights() ? 2 : 0, n, h, w, c, o, kh, kw, sh, sw, pt, pl, pb, pr};
  std::lock_guard<std::mutex> lock(cache_mutex);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  auto e = std::make_shared<Entry>();
  memory::dims src_dims{n, c, h, w}, dst_dims{n, o, oh, ow}, wei_dims{o, c, kh, kw};
  memory::dims strides{sh, sw}, pad_l{pt, pl}, pad_r{pb, pr};
  e->src = memory::desc(src_dims, dt::f32, tag::nhwc);
  e->other = memory::desc(dst_dims, dt::f32, tag::nhwc);
  e->out_user = memory::desc(wei_dims, dt::f32, tag::hwio);
  memory::desc wei_req = BlockedWeights() ? memory::desc(wei_dims, dt::f32, tag::any) : e->out_user;
  auto fwd_pd = dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, e->src,
      wei_req, e->other, strides, pad_l, pad_r, UserScratchpad());
  auto pd = dnnl::convolution_backward_weights::primitive_desc(
      Engine(), dnnl::algorithm::convolution_direct, e->src, wei_req, e->other, strides, pad_l,
      pad_r, fwd_pd, UserScratchpad());
  e->scratch = pd.scratchpad_desc();
  e->out = pd.diff_weights_desc();
  e->reorder_out = e->out != e->out_user;
  if (e->reorder_out) {
    e->out_reorder = std::make_unique<dnnl::reorder>(
        dnnl::reorder::primitive_desc(Engine(), e->out, Engine(), e->out_user));
  }
  e->prim = dnnl::convolution_backward_weights(pd);
  if (std::getenv("FNN_ONEDNN_INFO")) {
    std::fprintf(stderr, "fnn_onednn bwd_w %ldx%ldx%ldx%ld -> %ld: %s%s\n", (long)n, (long)h,
                 (long)w, (long)c, (long)o, pd.impl_info_str(),
                 e->reorder_out ? " (+ weights reorder)" : "");
  }
  cache[key] = e;
  return e;
}

std::shared_ptr<Entry> Forward(int64_t n, int64_t h, int64_t w, int64_t c, int64_t oh, int64_t ow,
                               int64_t o, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                               int64_t pt, int64_t pl, int64_t pb, int64_t pr) {
  Key key{BlockedWeights() ? 3 : 1, n, h, w, c, o, kh, kw, sh, sw, pt, pl, pb, pr};
  std::lock_guard<std::mutex> lock(cache_mutex);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  auto e = std::make_shared<Entry>();
  memory::dims src_dims{n, c, h, w}, dst_dims{n, o, oh, ow}, wei_dims{o, c, kh, kw};
  memory::dims strides{sh, sw}, pad_l{pt, pl}, pad_r{pb, pr};
  e->src = memory::desc(src_dims, dt::f32, tag::nhwc);
  e->out = memory::desc(dst_dims, dt::f32, tag::nhwc);
  e->out_user = e->out;
  e->other_user = memory::desc(wei_dims, dt::f32, tag::hwio);
  memory::desc wei_req =
      BlockedWeights() ? memory::desc(wei_dims, dt::f32, tag::any) : e->other_user;
  auto pd = dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, e->src,
      wei_req, e->out, strides, pad_l, pad_r, UserScratchpad());
  e->scratch = pd.scratchpad_desc();
  e->other = pd.weights_desc();
  e->reorder_other = e->other != e->other_user;
  if (e->reorder_other) {
    e->other_reorder = std::make_unique<dnnl::reorder>(
        dnnl::reorder::primitive_desc(Engine(), e->other_user, Engine(), e->other));
  }
  e->prim = dnnl::convolution_forward(pd);
  if (std::getenv("FNN_ONEDNN_INFO")) {
    std::fprintf(stderr, "fnn_onednn fwd %ldx%ldx%ldx%ld -> %ld: %s%s\n", (long)n, (long)h,
                 (long)w, (long)c, (long)o, pd.impl_info_str(),
                 e->reorder_other ? " (+ weights reorder)" : "");
  }
  cache[key] = e;
  return e;
}

ffi::Error CheckRank(const char* what, size_t rank) {
  if (rank != 4) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      std::string(what) + " must have rank 4, got " + std::to_string(rank));
  }
  return ffi::Error::Success();
}

ffi::Error ConvBwdWeightsImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> g,
                              ffi::ResultBuffer<ffi::F32> dw, int64_t kh, int64_t kw,
                              int64_t stride_h, int64_t stride_w, int64_t pad_top,
                              int64_t pad_left, int64_t pad_bottom, int64_t pad_right) {
  auto xd = x.dimensions();
  auto gd = g.dimensions();
  auto wd = dw->dimensions();
  if (auto e = CheckRank("x", xd.size()); e.failure()) return e;
  if (auto e = CheckRank("g", gd.size()); e.failure()) return e;
  if (auto e = CheckRank("dw", wd.size()); e.failure()) return e;
  if (wd[0] != kh || wd[1] != kw || wd[2] != xd[3] || wd[3] != gd[3] || gd[0] != xd[0]) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "fnn_onednn_conv_bwd_w: shape mismatch");
  }
  try {
    auto e = BwdWeights(xd[0], xd[1], xd[2], xd[3], gd[1], gd[2], gd[3], kh, kw, stride_h,
                        stride_w, pad_top, pad_left, pad_bottom, pad_right);
    dnnl::stream stream(Engine());
    memory src(e->src, Engine(), x.untyped_data());
    memory diff_dst(e->other, Engine(), g.untyped_data());
    memory user_out(e->out_user, Engine(), dw->untyped_data());
    memory scratch(e->scratch, Engine());
    if (e->reorder_out) {
      memory tmp(e->out, Engine());
      e->prim.execute(stream, {{DNNL_ARG_SRC, src},
                               {DNNL_ARG_DIFF_DST, diff_dst},
                               {DNNL_ARG_DIFF_WEIGHTS, tmp},
                               {DNNL_ARG_SCRATCHPAD, scratch}});
      e->out_reorder->execute(stream, tmp, user_out);
    } else {
      e->prim.execute(stream, {{DNNL_ARG_SRC, src},
                               {DNNL_ARG_DIFF_DST, diff_dst},
                               {DNNL_ARG_DIFF_WEIGHTS, user_out},
                               {DNNL_ARG_SCRATCHPAD, scratch}});
    }
    stream.wait();
  } catch (const dnnl::error& err) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN: ") + err.what());
  }
  return ffi::Error::Success();
}

ffi::Error ConvForwardImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                           ffi::ResultBuffer<ffi::F32> y, int64_t stride_h, int64_t stride_w,
                           int64_t pad_top, int64_t pad_left, int64_t pad_bottom,
                           int64_t pad_right) {
  auto xd = x.dimensions();
  auto wd = w.dimensions();
  auto yd = y->dimensions();
  if (auto e = CheckRank("x", xd.size()); e.failure()) return e;
  if (auto e = CheckRank("w", wd.size()); e.failure()) return e;
  if (auto e = CheckRank("y", yd.size()); e.failure()) return e;
  if (wd[2] != xd[3] || yd[3] != wd[3] || yd[0] != xd[0]) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "fnn_onednn_conv_fwd: shape mismatch");
  }
  try {
    auto e = Forward(xd[0], xd[1], xd[2], xd[3], yd[1], yd[2], yd[3], wd[0], wd[1], stride_h,
                     stride_w, pad_top, pad_left, pad_bottom, pad_right);
    dnnl::stream stream(Engine());
    memory src(e->src, Engine(), x.untyped_data());
    memory user_w(e->other_user, Engine(), w.untyped_data());
    memory dst(e->out, Engine(), y->untyped_data());
    memory scratch(e->scratch, Engine());
    if (e->reorder_other) {
      memory tmp(e->other, Engine());
      e->other_reorder->execute(stream, user_w, tmp);
      e->prim.execute(stream, {{DNNL_ARG_SRC, src},
                               {DNNL_ARG_WEIGHTS, tmp},
                               {DNNL_ARG_DST, dst},
                               {DNNL_ARG_SCRATCHPAD, scratch}});
    } else {
      e->prim.execute(stream, {{DNNL_ARG_SRC, src},
                               {DNNL_ARG_WEIGHTS, user_w},
                               {DNNL_ARG_DST, dst},
                               {DNNL_ARG_SCRATCHPAD, scratch}});
    }
    stream.wait();
  } catch (const dnnl::error& err) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN: ") + err.what());
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(FnnOnednnConvBwdWeights, ConvBwdWeightsImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("kh")
                                  .Attr<int64_t>("kw")
                                  .Attr<int64_t>("stride_h")
                                  .Attr<int64_t>("stride_w")
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_left")
                                  .Attr<int64_t>("pad_bottom")
                                  .Attr<int64_t>("pad_right"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(FnnOnednnConvForward, ConvForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride_h")
                                  .Attr<int64_t>("stride_w")
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_left")
                                  .Attr<int64_t>("pad_bottom")
                                  .Attr<int64_t>("pad_right"));
