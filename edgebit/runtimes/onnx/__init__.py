"""runtimes/onnx"""
