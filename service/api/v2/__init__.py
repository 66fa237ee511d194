"""KServe v2 (the Open Inference Protocol) over HTTP, with Triton's extensions (docs/protocol-v2.md):
routes.py the endpoints, catalog.py the models it shows, codec.py the JSON and binary tensors,
infer.py the checks and the run every v2 request shares with gRPC (service/api/grpc/)."""
