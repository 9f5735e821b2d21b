// ONNX Runtime kernel of edgebit::SelectiveScan (Mamba-2's recurrence, SPEC.md in this folder):
//   SelectiveScan(x [Bt,T,H,P], dt [Bt,T,H], A [H], B [Bt,T,G,N], C [Bt,T,G,N], D [H], state [Bt,H,P,N])
//     -> (y [Bt,T,H,P], final_state [Bt,H,P,N])
// per token t, head h (group g = h / (H/G)): S = S * exp(dt A) + (dt x) (outer) B_g;  y = S @ C_g + D x.
// The sequential recurrence serves prefill and decode alike; heads are independent and run in parallel.

#include <cmath>
#include <cstring>

#include "ort_ops.h"

namespace edgebit_ort {
namespace {

constexpr int kLanes = 8;

inline float Dot(const float* a, const float* b, int64_t n) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += a[i + l] * b[i + l];
  float total = 0.0f;
  for (int l = 0; l < kLanes; ++l) total += lanes[l];
  for (; i < n; ++i) total += a[i] * b[i];
  return total;
}

struct ScanKernel {
  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return Guarded("SelectiveScan", [&] {
      Ort::KernelContext ctx(context);
      auto x = ctx.GetInput(0), dt = ctx.GetInput(1), a = ctx.GetInput(2), b = ctx.GetInput(3), c = ctx.GetInput(4),
           d = ctx.GetInput(5), state = ctx.GetInput(6);
      std::vector<int64_t> xs = x.GetTensorTypeAndShapeInfo().GetShape();
      std::vector<int64_t> bs = b.GetTensorTypeAndShapeInfo().GetShape();
      std::vector<int64_t> ss = state.GetTensorTypeAndShapeInfo().GetShape();
      Require(xs.size() == 4 && bs.size() == 4 && ss.size() == 4, "x, B, C and state must be 4-D");
      const int64_t batch = xs[0], length = xs[1], heads = xs[2], dim = xs[3], groups = bs[2], size = bs[3];
      Require(groups > 0 && heads % groups == 0, "heads (" + std::to_string(heads) + ") must be a multiple of groups (" +
                                                     std::to_string(groups) + ")");
      Require(ss == std::vector<int64_t>{batch, heads, dim, size},
              "state " + ShapeText(ss) + " must be [Bt, H, P, N] = " + ShapeText({batch, heads, dim, size}));
      Require(bs == std::vector<int64_t>{batch, length, groups, size} &&
                  c.GetTensorTypeAndShapeInfo().GetShape() == bs,
              "B and C must be [Bt, T, G, N], got " + ShapeText(bs));
      Require(dt.GetTensorTypeAndShapeInfo().GetShape() == std::vector<int64_t>{batch, length, heads},
              "dt must be [Bt, T, H]");
      Require(static_cast<int64_t>(a.GetTensorTypeAndShapeInfo().GetElementCount()) == heads &&
                  static_cast<int64_t>(d.GetTensorTypeAndShapeInfo().GetElementCount()) == heads,
              "A and D must hold one value per head");
      float* y = ctx.GetOutput(0, xs).GetTensorMutableData<float>();
      float* s_out = ctx.GetOutput(1, ss).GetTensorMutableData<float>();
      const float *xp = x.GetTensorData<float>(), *dtp = dt.GetTensorData<float>(), *ap = a.GetTensorData<float>(),
                  *bp = b.GetTensorData<float>(), *cp = c.GetTensorData<float>(), *dp = d.GetTensorData<float>();
      std::memcpy(s_out, state.GetTensorData<float>(), sizeof(float) * static_cast<size_t>(batch * heads * dim * size));
      const int64_t per_group = heads / groups;

      ParallelChunks(ctx, batch * heads, 1, [&](int64_t begin, int64_t end) {
        for (int64_t bh = begin; bh < end; ++bh) {
          const int64_t bi = bh / heads, h = bh % heads, g = h / per_group;
          float* s_head = s_out + bh * dim * size;
          for (int64_t t = 0; t < length; ++t) {
            const int64_t bt = bi * length + t;
            const float step = dtp[bt * heads + h], decay = std::exp(step * ap[h]);
            const float* bv = bp + (bt * groups + g) * size;
            const float* cv = cp + (bt * groups + g) * size;
            const float* xv = xp + (bt * heads + h) * dim;
            float* yv = y + (bt * heads + h) * dim;
            for (int64_t p = 0; p < dim; ++p) {
              float* s = s_head + p * size;
              const float dx = step * xv[p];
              for (int64_t i = 0; i < size; ++i) s[i] = s[i] * decay + dx * bv[i];
              yv[p] = Dot(s, cv, size) + dp[h] * xv[p];
            }
          }
        }
      });
    });
  }
};

struct SelectiveScan : Ort::CustomOpBase<SelectiveScan, ScanKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi&, const OrtKernelInfo*, void** kernel) const {
    *kernel = new ScanKernel{};
    return nullptr;
  }
  const char* GetName() const { return "SelectiveScan"; }
  size_t GetInputTypeCount() const { return 7; }
  ONNXTensorElementDataType GetInputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
  size_t GetOutputTypeCount() const { return 2; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

}  // namespace

const OrtCustomOp* SelectiveScanOp() {
  static const SelectiveScan op;
  return &op;
}

}  // namespace edgebit_ort
