// gguf_dump: reads a local GGUF file with @huggingface/gguf (a parser nobody in this project
// wrote) and prints what it saw as JSON: every KV with its GGUF value type (and element type
// for arrays), every tensor info, the data offset. BigInts are printed as decimal strings.
// Usage: node gguf_dump.mjs FILE.gguf
import { gguf } from "@huggingface/gguf";

const path = process.argv[2];
const r = await gguf(path, { allowLocalFile: true, typedMetadata: true });
const kv = [];
for (const [key, v] of Object.entries(r.typedMetadata)) {
  if (key === "version" || key === "tensor_count" || key === "kv_count") continue;
  kv.push({ key, type: v.type, subType: v.subType ?? null, value: v.value });
}
const out = {
  version: r.metadata.version,
  tensor_count: r.metadata.tensor_count,
  kv_count: r.metadata.kv_count,
  littleEndian: r.littleEndian,
  tensorDataOffset: r.tensorDataOffset,
  tensorInfoByteRange: r.tensorInfoByteRange,
  kv,
  tensors: r.tensorInfos.map((t) => ({
    name: t.name, n_dims: t.n_dims, shape: t.shape, dtype: t.dtype, offset: t.offset,
  })),
};
process.stdout.write(JSON.stringify(out, (k, v) => (typeof v === "bigint" ? v.toString() : v)));
process.stdout.write("\n");
