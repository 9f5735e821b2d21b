// ONNX Runtime adapter of edgebit::Q4MatMul (the 4-bit output head, SPEC.md; the math is kernel.h):
//   Q4MatMul(x float [..., K], w_codes uint8 [N, Kp / 2], w_scale float [N, Kp / B]; in_features = K, block_size = B)
//     -> float [..., N]
#include "q4_matmul/kernel.h"
#include "common/ort_ops.h"

namespace edgebit_ort {
namespace {

namespace kernel = edgebit_kernels::q4_matmul;

struct Q4Kernel {
  int64_t in_features;
  int64_t block_size;

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return Guarded("Q4MatMul", [&] {
      Ort::KernelContext ctx(context);
      auto x = ctx.GetInput(0), w = ctx.GetInput(1), scale = ctx.GetInput(2);
      const Dims xs = Shape(x), ws = Shape(w);
      RequireShapes(kernel::ShapeError(xs, ws, Shape(scale), in_features, block_size));
      float* out = ctx.GetOutput(0, edgebit_kernels::WithLastDim(xs, ws[0])).GetTensorMutableData<float>();
      kernel::Run(kernel::MakeProblem(xs, ws, x.GetTensorData<float>(), w.GetTensorData<uint8_t>(),
                                      scale.GetTensorData<float>(), block_size, out),
                  OrtParallel{ctx});
    });
  }
};

struct Q4MatMul : FloatOp<Q4MatMul, Q4Kernel, 3, 1, /*uint8 input*/ 1> {
  OrtStatusPtr CreateKernelV2(const OrtApi&, const OrtKernelInfo* info, void** kernel) const {
    return Guarded("Q4MatMul", [&] {
      Ort::ConstKernelInfo kernel_info(info);
      *kernel = new Q4Kernel{kernel_info.GetAttribute<int64_t>("in_features"),
                               kernel_info.GetAttribute<int64_t>("block_size")};
    });
  }
  const char* GetName() const { return "Q4MatMul"; }
};

}  // namespace

const OrtCustomOp* Q4MatMulOp() {
  static const Q4MatMul op;
  return &op;
}

}  // namespace edgebit_ort
