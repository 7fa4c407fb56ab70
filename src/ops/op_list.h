// Every op of the catalog, in catalog order: TAPML_OP(Enumerator, name). An op is this line
// plus its definition file, ops/<name>.cpp (meaning, shape and dtype rules, in-place outputs,
// tolerance, conformance examples). Include with TAPML_OP defined.
TAPML_OP(Embedding, embedding)
TAPML_OP(RmsNorm, rmsnorm)
TAPML_OP(Matmul, matmul)
TAPML_OP(Rope, rope)
TAPML_OP(KvStore, kv_store)
TAPML_OP(Attention, attention)
TAPML_OP(Swiglu, swiglu)
TAPML_OP(Add, add)
TAPML_OP(Gelu, gelu)
