"""The data plane over gRPC: KServe V2 and TF Serving, as thin adapters over serving.core."""
