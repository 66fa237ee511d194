"""KServe v2 over gRPC, Triton's service (docs/protocol-v2.md): server.py the servicer and its
transport limits, codec.py the messages, stream.py ModelStreamInfer, stats.py ModelStatistics,
status.py the errors as gRPC codes. The checks and the run are service/api/v2/infer.py's."""
