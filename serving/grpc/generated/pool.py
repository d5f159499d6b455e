"""ModelDeck's gRPC descriptor pool, apart from protobuf's default (see serving.grpc.generate)."""

from google.protobuf import any_pb2, descriptor_pool, wrappers_pb2

POOL = descriptor_pool.DescriptorPool()
# The well-known types the protos import, added once so their files resolve in this pool too.
for _module in (any_pb2, wrappers_pb2):
    POOL.AddSerializedFile(_module.DESCRIPTOR.serialized_pb)
