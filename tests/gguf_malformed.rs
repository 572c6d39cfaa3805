//! Hostile and broken GGUF files: each must give a typed error, never a panic.
//! The cases follow llama.cpp's own GGUF tests (bad magic, versions, counts, keys,
//! types, alignment, tensor table, data bounds) plus a truncation sweep.

use tramontane::gguf::{GgmlType, Gguf, GgufError, GgufWriter, TypeId, ValueType};

/// Builds raw GGUF bytes field by field, so that tests can write what the writer never would.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw::default();
        r.0.extend_from_slice(b"GGUF");
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn kv_u32(&mut self, k: &str, v: u32) -> &mut Self {
        self.str(k).u32(4).u32(v)
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Pad to 32 and append `n` data bytes.
    fn data(&mut self, n: usize) -> &mut Self {
        while !self.0.len().is_multiple_of(32) {
            self.0.push(0);
        }
        self.0.extend(std::iter::repeat_n(0xAB, n));
        self
    }
    fn parse(&self) -> Result<Gguf<&[u8]>, GgufError> {
        Gguf::parse(&self.0[..])
    }
}

fn err(r: &Raw) -> GgufError {
    match r.parse() {
        Ok(g) => panic!("expected an error, parsed {g:?}"),
        Err(e) => {
            // Every error must render a message (what and where).
            assert!(!e.to_string().is_empty());
            e
        }
    }
}

#[test]
fn bad_magic() {
    let mut r = Raw::header(3, 0, 0);
    r.0[0] = b'X';
    assert!(matches!(err(&r), GgufError::BadMagic { .. }));
    assert!(matches!(
        Gguf::parse(&b"GGU"[..]),
        Err(GgufError::Truncated { .. })
    ));
    assert!(matches!(
        Gguf::parse(&b""[..]),
        Err(GgufError::Truncated { .. })
    ));
}

#[test]
fn versions_0_1_4_rejected_2_3_accepted() {
    for v in [0, 1, 4, u32::MAX] {
        assert_eq!(
            err(&Raw::header(v, 0, 0)),
            GgufError::UnsupportedVersion { version: v }
        );
    }
    for v in [2, 3] {
        let r = Raw::header(v, 0, 0);
        let g = r.parse().unwrap();
        assert_eq!(g.version(), v);
        assert_eq!(g.tensor_count(), 0);
    }
}

#[test]
fn huge_counts() {
    for (t, k) in [
        (u64::MAX, 0),
        (0, u64::MAX),
        (1 << 40, 0),
        (0, 1 << 40),
        (u64::MAX / 2, u64::MAX / 2),
    ] {
        let e = err(&Raw::header(3, t, k));
        assert!(matches!(e, GgufError::CountTooLarge { .. }), "{e:?}");
    }
    // A count that passes the cap but has no bytes behind it.
    let mut r = Raw::header(3, 0, 1);
    r.0.extend_from_slice(&[0u8; 14]);
    assert!(r.parse().is_err());
}

#[test]
fn key_length_overflow() {
    for len in [u64::MAX, u64::MAX - 1, 1 << 63, 1 << 40] {
        let mut r = Raw::header(3, 0, 1);
        r.u64(len).0.extend_from_slice(&[b'a'; 32]);
        let e = err(&r);
        assert!(
            matches!(
                e,
                GgufError::StringTooLong { .. } | GgufError::Truncated { .. }
            ),
            "{e:?}"
        );
    }
}

#[test]
fn empty_and_duplicate_keys() {
    let mut r = Raw::header(3, 0, 1);
    r.str("").u32(4).u32(1);
    assert!(matches!(err(&r), GgufError::EmptyKey { .. }));

    let mut r = Raw::header(3, 0, 2);
    r.kv_u32("a.b", 1).kv_u32("a.b", 2);
    assert_eq!(err(&r), GgufError::DuplicateKey { key: "a.b".into() });
}

#[test]
fn unknown_value_type() {
    for ty in [13, 14, 255, u32::MAX] {
        let mut r = Raw::header(3, 0, 1);
        r.str("k").u32(ty).u32(0);
        assert!(matches!(err(&r), GgufError::UnknownValueType { type_id, .. } if type_id == ty));
        // The same as an array element type.
        let mut r = Raw::header(3, 0, 1);
        r.str("k").u32(9).u32(ty).u64(1).u32(0);
        assert!(matches!(err(&r), GgufError::UnknownValueType { type_id, .. } if type_id == ty));
    }
}

#[test]
fn bool_must_be_0_or_1() {
    for v in [0u8, 1] {
        let mut r = Raw::header(3, 0, 1);
        r.str("b").u32(7).u8(v);
        assert_eq!(r.parse().unwrap().get_bool("b").unwrap(), v == 1);
    }
    let mut r = Raw::header(3, 0, 1);
    r.str("b").u32(7).u8(2);
    assert!(matches!(err(&r), GgufError::InvalidBool { value: 2, .. }));
    let mut r = Raw::header(3, 0, 1);
    r.str("b").u32(9).u32(7).u64(3).u8(1).u8(0).u8(255);
    assert!(matches!(err(&r), GgufError::InvalidBool { value: 255, .. }));
}

#[test]
fn alignment_rules() {
    for bad in [0u32, 3, 48, u32::MAX] {
        let mut r = Raw::header(3, 0, 1);
        r.kv_u32("general.alignment", bad);
        assert!(
            matches!(err(&r), GgufError::BadAlignment { .. }),
            "alignment {bad}"
        );
    }
    // Wrong types: u64, i32, string.
    let mut r = Raw::header(3, 0, 1);
    r.str("general.alignment").u32(10).u64(32);
    assert!(matches!(err(&r), GgufError::BadAlignment { .. }));
    let mut r = Raw::header(3, 0, 1);
    r.str("general.alignment").u32(5).u32(32);
    assert!(matches!(err(&r), GgufError::BadAlignment { .. }));
    let mut r = Raw::header(3, 0, 1);
    r.str("general.alignment").u32(8).str("32");
    assert!(matches!(err(&r), GgufError::BadAlignment { .. }));
    // A good one is used.
    let mut r = Raw::header(3, 1, 1);
    r.kv_u32("general.alignment", 64).tensor("t", &[4], 0, 64);
    while !r.0.len().is_multiple_of(64) {
        r.0.push(0);
    }
    r.0.extend_from_slice(&[0; 80]);
    let g = r.parse().unwrap();
    assert_eq!(g.alignment(), 64);
    assert_eq!(g.data_offset() % 64, 0);
    // offset 32 is not a multiple of 64
    let mut r = Raw::header(3, 1, 1);
    r.kv_u32("general.alignment", 64).tensor("t", &[4], 0, 32);
    r.data(200);
    assert!(matches!(
        err(&r),
        GgufError::MisalignedTensor { alignment: 64, .. }
    ));
}

#[test]
fn tensor_name_rules() {
    let long = "x".repeat(65);
    let mut r = Raw::header(3, 1, 0);
    r.tensor(&long, &[4], 0, 0).data(16);
    assert!(matches!(err(&r), GgufError::BadTensorName { len: 65, .. }));
    let mut r = Raw::header(3, 1, 0);
    r.tensor("", &[4], 0, 0).data(16);
    assert!(matches!(err(&r), GgufError::BadTensorName { len: 0, .. }));
    // 64 bytes is fine.
    let mut r = Raw::header(3, 1, 0);
    r.tensor(&"y".repeat(64), &[4], 0, 0).data(16);
    r.parse().unwrap();
    // Duplicates.
    let mut r = Raw::header(3, 2, 0);
    r.tensor("t", &[4], 0, 0).tensor("t", &[4], 0, 32).data(64);
    assert_eq!(err(&r), GgufError::DuplicateTensor { name: "t".into() });
    // Invalid UTF-8 in a name.
    let mut r = Raw::header(3, 1, 0);
    r.u64(2)
        .u8(0xff)
        .u8(0xfe)
        .u32(1)
        .u64(4)
        .u32(0)
        .u64(0)
        .data(16);
    assert!(matches!(err(&r), GgufError::InvalidUtf8 { .. }));
}

#[test]
fn dims_rules() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[1, 1, 1, 1, 1], 0, 0).data(16);
    assert!(matches!(err(&r), GgufError::BadDimCount { n_dims: 5, .. }));
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[], 0, 0).data(16);
    assert!(matches!(err(&r), GgufError::BadDimCount { n_dims: 0, .. }));
    let mut r = Raw::header(3, 1, 0);
    r.str("t").u32(u32::MAX).data(16);
    assert!(matches!(err(&r), GgufError::BadDimCount { .. }));
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[4, 0], 0, 0).data(16);
    assert!(matches!(
        err(&r),
        GgufError::BadDim {
            index: 1,
            value: 0,
            ..
        }
    ));
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[u64::MAX], 0, 0).data(16);
    assert!(matches!(err(&r), GgufError::BadDim { .. }));
    for dims in [
        &[1u64 << 32, 1 << 32][..],
        &[1 << 62, 4],
        &[1 << 30, 1 << 30, 1 << 30, 1 << 30],
    ] {
        let mut r = Raw::header(3, 1, 0);
        r.tensor("t", dims, 0, 0).data(16);
        assert!(
            matches!(err(&r), GgufError::ShapeOverflow { .. }),
            "{dims:?}"
        );
    }
    // Q4_0 needs ne[0] % 32 == 0.
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[33], 2, 0).data(64);
    assert!(matches!(
        err(&r),
        GgufError::RowNotBlockMultiple {
            ne0: 33,
            block: 32,
            ..
        }
    ));
}

#[test]
fn tensor_types() {
    for (id, expect) in [
        (40, TypeId::Unknown(40)),
        (u32::MAX, TypeId::Unknown(u32::MAX)),
        (4, TypeId::Removed(4)),
        (31, TypeId::Removed(31)),
        (36, TypeId::Removed(36)),
    ] {
        let mut r = Raw::header(3, 1, 0);
        r.tensor("t", &[256], id, 0).data(1024);
        assert_eq!(
            err(&r),
            GgufError::BadTensorType {
                tensor: "t".into(),
                ty: expect
            }
        );
    }
    // A type we cannot compute with is still readable.
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[256], GgmlType::IQ2_XXS.id(), 0).data(66);
    let g = r.parse().unwrap();
    assert_eq!(g.tensor("t").unwrap().info.ty, GgmlType::IQ2_XXS);
}

#[test]
fn tensor_bounds_and_overlap() {
    // Data beyond the end.
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[8], 0, 0).data(31);
    assert!(matches!(err(&r), GgufError::TensorOutOfBounds { .. }));
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[8], 0, u64::MAX - 31).data(64);
    assert!(matches!(err(&r), GgufError::TensorOutOfBounds { .. }));
    // Overlap: t2 starts inside t1.
    let mut r = Raw::header(3, 2, 0);
    r.tensor("t1", &[16], 0, 0)
        .tensor("t2", &[8], 0, 32)
        .data(128);
    assert!(matches!(err(&r), GgufError::OverlappingTensors { .. }));
    // Same ranges, listed the other way round.
    let mut r = Raw::header(3, 2, 0);
    r.tensor("t2", &[8], 0, 32)
        .tensor("t1", &[16], 0, 0)
        .data(128);
    assert!(matches!(err(&r), GgufError::OverlappingTensors { .. }));
    // Touching is fine.
    let mut r = Raw::header(3, 2, 0);
    r.tensor("t1", &[8], 0, 0)
        .tensor("t2", &[8], 0, 32)
        .data(64);
    let g = r.parse().unwrap();
    assert_eq!(g.tensor("t2").unwrap().data, &[0xAB; 32][..]);
    // Header claims tensors but the file ends before the data section.
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[8], 0, 0);
    assert!(r.parse().is_err());
}

#[test]
fn arrays_nested_100000_deep() {
    let mut r = Raw::header(3, 0, 1);
    r.str("deep").u32(9);
    for _ in 0..100_000 {
        r.u32(9).u64(1);
    }
    r.u32(4).u64(1).u32(7);
    assert!(matches!(err(&r), GgufError::NestedArray { .. }));
}

#[test]
fn huge_array_and_string_counts() {
    let mut r = Raw::header(3, 0, 1);
    r.str("a").u32(9).u32(8).u64(u64::MAX);
    assert!(matches!(err(&r), GgufError::CountTooLarge { .. }));
    let mut r = Raw::header(3, 0, 1);
    r.str("a").u32(9).u32(0).u64(1 << 40);
    assert!(matches!(err(&r), GgufError::CountTooLarge { .. }));
    let mut r = Raw::header(3, 0, 1);
    r.str("s").u32(8).u64(u64::MAX);
    assert!(matches!(err(&r), GgufError::StringTooLong { .. }));
    let mut r = Raw::header(3, 0, 1);
    r.str("s").u32(8).u64(1000).0.extend_from_slice(b"short");
    assert!(matches!(err(&r), GgufError::Truncated { .. }));
    // Strings in arrays are validated as UTF-8.
    let mut r = Raw::header(3, 0, 1);
    r.str("a").u32(9).u32(8).u64(2).str("ok").u64(1).u8(0xC3);
    assert!(matches!(err(&r), GgufError::InvalidUtf8 { .. }));
}

/// A small but complete file: every value type, a string array, and three tensors.
fn sample_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add_str("general.architecture", "llama");
    w.add_u32("llama.block_count", 2);
    w.add_f32("llama.rope.freq_base", 10000.0);
    w.add_bool("tokenizer.ggml.add_bos_token", true);
    w.add("u8", tramontane::gguf::OwnedValue::U8(7));
    w.add("i64", tramontane::gguf::OwnedValue::I64(-5));
    w.add("f64", tramontane::gguf::OwnedValue::F64(0.25));
    w.add_str_array("tokenizer.ggml.tokens", &["<s>", "a", "é", "🦀"]);
    w.add_f32_array("tokenizer.ggml.scores", &[0.0, -1.0, -2.0, -3.5]);
    w.add_tensor("a", GgmlType::F32, &[4, 2], &[1u8; 32])
        .unwrap();
    w.add_tensor("b", GgmlType::Q8_0, &[32], &[2u8; 34])
        .unwrap();
    w.add_tensor("c", GgmlType::F16, &[3], &[3u8; 6]).unwrap();
    w.to_bytes().unwrap()
}

#[test]
fn round_trip() {
    let bytes = sample_file();
    let g = Gguf::parse(&bytes[..]).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(g.get_u32("llama.block_count").unwrap(), 2);
    assert_eq!(g.get_f32("llama.rope.freq_base").unwrap(), 10000.0);
    assert!(g.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    assert_eq!(g.get_i32("i64").unwrap(), -5);
    assert_eq!(g.get_f32("f64").unwrap(), 0.25);
    let toks: Vec<&str> = g
        .get_array("tokenizer.ggml.tokens")
        .unwrap()
        .strings()
        .unwrap()
        .collect();
    assert_eq!(toks, ["<s>", "a", "é", "🦀"]);
    let scores = g.get_array("tokenizer.ggml.scores").unwrap();
    assert_eq!(scores.elem_type(), ValueType::F32);
    assert_eq!(
        scores.f32s().unwrap().collect::<Vec<_>>(),
        [0.0, -1.0, -2.0, -3.5]
    );
    assert_eq!(
        g.get_array("tokenizer.ggml.tokens")
            .unwrap()
            .get(3)
            .unwrap()
            .as_str(),
        Some("🦀")
    );
    let a = g.tensor("a").unwrap();
    assert_eq!(
        (a.info.ty, a.info.shape(), a.data),
        (GgmlType::F32, &[4u64, 2][..], &[1u8; 32][..])
    );
    assert_eq!(g.tensor("b").unwrap().data, &[2u8; 34][..]);
    assert_eq!(g.tensor("c").unwrap().data, &[3u8; 6][..]);
    assert_eq!(g.tensor("c").unwrap().info.offset % 32, 0);
    // Typed accessors check types and presence.
    assert!(matches!(
        g.get_u32("general.architecture"),
        Err(GgufError::WrongType { .. })
    ));
    assert!(matches!(
        g.get_str("missing"),
        Err(GgufError::MissingKey { .. })
    ));
    assert!(matches!(g.get_u32("i64"), Err(GgufError::WrongType { .. })));
    assert_eq!(g.find_u32("missing").unwrap(), None);
    assert!(matches!(
        g.tensor("zzz"),
        Err(GgufError::MissingTensor { .. })
    ));
    // Metadata order is the file order.
    let keys: Vec<&str> = g.metadata().map(|(k, _)| k).collect();
    assert_eq!(keys.first(), Some(&"general.architecture"));
    assert_eq!(keys.len(), 9);
}

#[test]
fn unaligned_base_reads_the_same() {
    let bytes = sample_file();
    let mut shifted = vec![0u8; bytes.len() + 1];
    shifted[1..].copy_from_slice(&bytes);
    let g = Gguf::parse(&shifted[1..]).unwrap();
    assert_eq!(g.get_f32("llama.rope.freq_base").unwrap(), 10000.0);
    assert_eq!(g.tensor("b").unwrap().data, &[2u8; 34][..]);
}

#[test]
fn truncation_sweep_never_panics() {
    let bytes = sample_file();
    let full = Gguf::parse(&bytes[..]).unwrap();
    let data_offset = full.data_offset() as usize;
    for cut in 0..bytes.len() {
        match Gguf::parse(&bytes[..cut]) {
            Err(e) => assert!(!e.to_string().is_empty()),
            Ok(g) => {
                // Only a cut inside the trailing padding of the last tensor can parse.
                assert!(cut > data_offset, "cut at {cut} parsed");
                for t in g.tensors() {
                    assert_eq!(g.tensor_data(&t).len() as u64, t.size);
                }
            }
        }
    }
}

#[test]
fn every_single_byte_flip_is_handled() {
    // Not exhaustive over values, but over positions: flip each header byte to 0xFF.
    let bytes = sample_file();
    let data_offset = Gguf::parse(&bytes[..]).unwrap().data_offset() as usize;
    for i in 0..data_offset {
        let mut b = bytes.clone();
        b[i] ^= 0xFF;
        if let Ok(g) = Gguf::parse(&b[..]) {
            for t in g.tensors() {
                assert_eq!(g.tensor_data(&t).len() as u64, t.size);
            }
            for (_, v) in g.metadata() {
                if let Some(a) = v.as_array() {
                    assert_eq!(a.iter().count(), a.len());
                }
            }
        }
    }
}

/// A short deterministic smoke run of the fuzz target's body: random mutations of a
/// valid file (byte flips, splices, cuts, length fields set to extremes). The real
/// fuzzing is `cargo fuzz run gguf` (see fuzz/).
#[test]
fn fuzz_smoke() {
    let base = sample_file();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let t0 = std::time::Instant::now();
    let mut parsed = 0;
    for _ in 0..20_000 {
        let mut b = base.clone();
        for _ in 0..1 + rand() % 4 {
            let i = (rand() as usize) % b.len();
            match rand() % 4 {
                0 => b[i] = rand() as u8,
                1 => b.truncate(i),
                2 if i + 8 <= b.len() => b[i..i + 8].copy_from_slice(&[0xFF; 8]),
                _ => b.insert(i, rand() as u8),
            }
            if b.is_empty() {
                break;
            }
        }
        if tramontane::gguf::fuzz_parse(&b) > 0 {
            parsed += 1;
        }
        if t0.elapsed().as_secs() > 50 {
            break;
        }
    }
    assert!(
        parsed > 0,
        "no mutation parsed: the smoke run is not exercising the accessors"
    );
}
