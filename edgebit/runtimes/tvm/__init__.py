"""runtimes/tvm"""
