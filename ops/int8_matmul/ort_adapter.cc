// ONNX Runtime adapter of edgebit::Int8MatMul (the quantized output head, SPEC.md; the math is kernel.h):
//   Int8MatMul(x float [..., K], w_codes uint8 [N, Kp], w_scale float [N]; in_features = K, block_size = B)
//     -> float [..., N]
#include "int8_matmul/kernel.h"
#include "common/ort_ops.h"

namespace edgebit_ort {
namespace {

namespace kernel = edgebit_kernels::int8_matmul;

struct Int8Kernel {
  int64_t in_features;
  int64_t block_size;

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return Guarded("Int8MatMul", [&] {
      Ort::KernelContext ctx(context);
      auto x = ctx.GetInput(0), w = ctx.GetInput(1), scale = ctx.GetInput(2);
      const Dims xs = Shape(x), ws = Shape(w);
      RequireShapes(kernel::ShapeError(xs, ws, Count(scale), in_features, block_size));
      float* out = ctx.GetOutput(0, edgebit_kernels::WithLastDim(xs, ws[0])).GetTensorMutableData<float>();
      kernel::Run(kernel::MakeProblem(xs, ws, x.GetTensorData<float>(), w.GetTensorData<uint8_t>(),
                                      scale.GetTensorData<float>(), block_size, out),
                  OrtParallel{ctx});
    });
  }
};

struct Int8MatMul : FloatOp<Int8MatMul, Int8Kernel, 3, 1, /*uint8 input*/ 1> {
  OrtStatusPtr CreateKernelV2(const OrtApi&, const OrtKernelInfo* info, void** kernel) const {
    return Guarded("Int8MatMul", [&] {
      Ort::ConstKernelInfo kernel_info(info);
      *kernel = new Int8Kernel{kernel_info.GetAttribute<int64_t>("in_features"),
                               kernel_info.GetAttribute<int64_t>("block_size")};
    });
  }
  const char* GetName() const { return "Int8MatMul"; }
};

}  // namespace

const OrtCustomOp* Int8MatMulOp() {
  static const Int8MatMul op;
  return &op;
}

}  // namespace edgebit_ort
