"""runtimes/executorch"""
