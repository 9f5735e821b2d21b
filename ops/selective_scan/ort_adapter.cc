// ONNX Runtime adapter of edgebit::SelectiveScan (Mamba-2's recurrence, SPEC.md; the math is kernel.h):
//   SelectiveScan(x [Bt,T,H,P], dt [Bt,T,H], A [H], B [Bt,T,G,N], C [Bt,T,G,N], D [H], state [Bt,H,P,N])
//     -> (y [Bt,T,H,P], final_state [Bt,H,P,N])
#include "common/ort_ops.h"
#include "selective_scan/kernel.h"

namespace edgebit_ort {
namespace {

namespace kernel = edgebit_kernels::selective_scan;

struct ScanKernel {
  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return Guarded("SelectiveScan", [&] {
      Ort::KernelContext ctx(context);
      auto x = ctx.GetInput(0), dt = ctx.GetInput(1), a = ctx.GetInput(2), b = ctx.GetInput(3), c = ctx.GetInput(4),
           d = ctx.GetInput(5), state = ctx.GetInput(6);
      const Dims xs = Shape(x), bs = Shape(b), ss = Shape(state);
      RequireShapes(kernel::ShapeError(xs, Shape(dt), Count(a), bs, Shape(c), Count(d), ss));
      float* y = ctx.GetOutput(0, xs).GetTensorMutableData<float>();
      float* final_state = ctx.GetOutput(1, ss).GetTensorMutableData<float>();
      kernel::Run(kernel::MakeProblem(xs, bs, x.GetTensorData<float>(), dt.GetTensorData<float>(),
                                      a.GetTensorData<float>(), b.GetTensorData<float>(), c.GetTensorData<float>(),
                                      d.GetTensorData<float>(), state.GetTensorData<float>(), y, final_state),
                  OrtParallel{ctx});
    });
  }
};

struct SelectiveScan : FloatOp<SelectiveScan, ScanKernel, 7, 2> {
  OrtStatusPtr CreateKernelV2(const OrtApi&, const OrtKernelInfo*, void** kernel) const {
    *kernel = new ScanKernel{};
    return nullptr;
  }
  const char* GetName() const { return "SelectiveScan"; }
};

}  // namespace

const OrtCustomOp* SelectiveScanOp() {
  static const SelectiveScan op;
  return &op;
}

}  // namespace edgebit_ort
