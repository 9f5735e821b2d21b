// ONNX Runtime adapter of edgebit::BinaryMatMul (FBI-Linear, SPEC.md; the math is kernel.h):
//   BinaryMatMul(x float [..., K], w_signs uint8 [N, Kq], alpha float [1, K], beta float [1, K]; in_features = K)
//     -> float [..., N]
#include "binary_matmul/kernel.h"
#include "common/ort_ops.h"

namespace edgebit_ort {
namespace {

namespace kernel = edgebit_kernels::binary_matmul;

struct BinaryKernel {
  int64_t in_features;

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return Guarded("BinaryMatMul", [&] {
      Ort::KernelContext ctx(context);
      auto x = ctx.GetInput(0), w = ctx.GetInput(1), alpha = ctx.GetInput(2), beta = ctx.GetInput(3);
      const Dims xs = Shape(x), ws = Shape(w);
      RequireShapes(kernel::ShapeError(xs, ws, Count(alpha), Count(beta), in_features));
      float* out = ctx.GetOutput(0, edgebit_kernels::WithLastDim(xs, ws[0])).GetTensorMutableData<float>();
      kernel::Run(kernel::MakeProblem(xs, ws, x.GetTensorData<float>(), w.GetTensorData<uint8_t>(),
                                      alpha.GetTensorData<float>(), beta.GetTensorData<float>(), out),
                  OrtParallel{ctx});
    });
  }
};

struct BinaryMatMul : FloatOp<BinaryMatMul, BinaryKernel, 4, 1, /*uint8 input*/ 1> {
  OrtStatusPtr CreateKernelV2(const OrtApi&, const OrtKernelInfo* info, void** kernel) const {
    return CreateWithInFeatures<BinaryKernel>("BinaryMatMul", info, kernel);
  }
  const char* GetName() const { return "BinaryMatMul"; }
};

}  // namespace

const OrtCustomOp* BinaryMatMulOp() {
  static const BinaryMatMul op;
  return &op;
}

}  // namespace edgebit_ort
