// ONNX Runtime adapter of edgebit::TernaryMatMul (SPEC.md; the math is kernel.h):
//   TernaryMatMul(x float [..., K], w_packed uint8 [N, Kq], w_scale float [1]; in_features = K) -> float [..., N]
#include "common/ort_ops.h"
#include "ternary_matmul/kernel.h"

namespace edgebit_ort {
namespace {

namespace kernel = edgebit_kernels::ternary_matmul;

struct TernaryKernel {
  int64_t in_features;

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return Guarded("TernaryMatMul", [&] {
      Ort::KernelContext ctx(context);
      auto x = ctx.GetInput(0), w = ctx.GetInput(1), scale = ctx.GetInput(2);
      const Dims xs = Shape(x), ws = Shape(w);
      RequireShapes(kernel::ShapeError(xs, ws, Count(scale), in_features));
      float* out = ctx.GetOutput(0, edgebit_kernels::WithLastDim(xs, ws[0])).GetTensorMutableData<float>();
      kernel::Run(kernel::MakeProblem(xs, ws, x.GetTensorData<float>(), w.GetTensorData<uint8_t>(),
                                      scale.GetTensorData<float>()[0], out),
                  OrtParallel{ctx});
    });
  }
};

struct TernaryMatMul : FloatOp<TernaryMatMul, TernaryKernel, 3, 1, /*uint8 input*/ 1> {
  OrtStatusPtr CreateKernelV2(const OrtApi&, const OrtKernelInfo* info, void** kernel) const {
    return CreateWithInFeatures<TernaryKernel>("TernaryMatMul", info, kernel);
  }
  const char* GetName() const { return "TernaryMatMul"; }
};

}  // namespace

const OrtCustomOp* TernaryMatMulOp() {
  static const TernaryMatMul op;
  return &op;
}

}  // namespace edgebit_ort
