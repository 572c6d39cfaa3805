//! Cross-check with gguf-py both ways: files gguf-py writes read identically here, and
//! gguf-py reads ours. Needs `python3` with the `gguf` package (the README's test
//! command installs it). Set TRAMONTANE_SKIP_PYTHON=1 to skip (the qemu runs do).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;
use tramontane::gguf::{GgmlType, Gguf, GgufWriter, OwnedValue, Value, ValueType};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn skip() -> bool {
    std::env::var_os("TRAMONTANE_SKIP_PYTHON").is_some()
}

fn python(args: &[&str]) {
    let out = Command::new("python3")
        .arg(fixtures().join("gguf_py_check.py"))
        .args(args)
        .output()
        .expect("python3 must be installed (or set TRAMONTANE_SKIP_PYTHON=1)");
    assert!(
        out.status.success(),
        "gguf_py_check.py {args:?} failed (is `pip install gguf numpy` done?):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn spec() -> Json {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("gguf_sample.json")).unwrap())
        .unwrap()
}

fn ggml_type(name: &str) -> GgmlType {
    *GgmlType::ALL.iter().find(|t| t.name() == name).unwrap()
}

fn tensor_bytes(ty: GgmlType, shape: &[u64], k: usize) -> Vec<u8> {
    let n: u64 = shape.iter().product();
    let bytes = ty.row_bytes(n).unwrap() as usize;
    (0..bytes).map(|i| ((i * 7 + 13 * k) % 256) as u8).collect()
}

fn owned(ty: &str, v: &Json) -> OwnedValue {
    match ty {
        "uint8" => OwnedValue::U8(v.as_u64().unwrap() as u8),
        "int8" => OwnedValue::I8(v.as_i64().unwrap() as i8),
        "uint16" => OwnedValue::U16(v.as_u64().unwrap() as u16),
        "int16" => OwnedValue::I16(v.as_i64().unwrap() as i16),
        "uint32" => OwnedValue::U32(v.as_u64().unwrap() as u32),
        "int32" => OwnedValue::I32(v.as_i64().unwrap() as i32),
        "uint64" => OwnedValue::U64(v.as_u64().unwrap()),
        "int64" => OwnedValue::I64(v.as_i64().unwrap()),
        "float32" => OwnedValue::F32(v.as_f64().unwrap() as f32),
        "float64" => OwnedValue::F64(v.as_f64().unwrap()),
        "bool" => OwnedValue::Bool(v.as_bool().unwrap()),
        "string" => OwnedValue::String(v.as_str().unwrap().into()),
        other => panic!("type {other}"),
    }
}

fn value_type(name: &str) -> ValueType {
    (0..13)
        .filter_map(ValueType::from_id)
        .find(|t| t.name() == name)
        .unwrap()
}

fn write_ours(path: &Path) {
    let spec = spec();
    let mut w = GgufWriter::new();
    for m in spec["metadata"].as_array().unwrap() {
        let key = m["key"].as_str().unwrap();
        let ty = m["type"].as_str().unwrap();
        let v = if ty == "array" {
            let elem = m["elem"].as_str().unwrap();
            let items = m["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| owned(elem, x))
                .collect();
            OwnedValue::Array(value_type(elem), items)
        } else {
            owned(ty, &m["value"])
        };
        w.add(key, v);
    }
    for (k, t) in spec["tensors"].as_array().unwrap().iter().enumerate() {
        let ty = ggml_type(t["type"].as_str().unwrap());
        let shape: Vec<u64> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        w.add_tensor(
            t["name"].as_str().unwrap(),
            ty,
            &shape,
            &tensor_bytes(ty, &shape, k),
        )
        .unwrap();
    }
    w.write_to_file(path).unwrap();
}

fn same(ty: &str, got: &Value<'_>, want: &Json) -> bool {
    match (ty, got) {
        ("float32", Value::F32(x)) => *x == want.as_f64().unwrap() as f32,
        ("float64", Value::F64(x)) => *x == want.as_f64().unwrap(),
        ("bool", Value::Bool(b)) => Some(*b) == want.as_bool(),
        ("string", Value::String(s)) => Some(*s) == want.as_str(),
        (_, v) => v.as_integer().is_some_and(|i| {
            want.as_i64().map(i128::from) == Some(i) || want.as_u64().map(i128::from) == Some(i)
        }),
    }
}

fn check_reads_as_sample(bytes: &[u8]) {
    let g = Gguf::parse(bytes).unwrap();
    let spec = spec();
    let metas = spec["metadata"].as_array().unwrap();
    let keys: Vec<&str> = g.metadata().map(|(k, _)| k).collect();
    let want_keys: Vec<&str> = metas.iter().map(|m| m["key"].as_str().unwrap()).collect();
    assert_eq!(keys, want_keys);
    for m in metas {
        let key = m["key"].as_str().unwrap();
        let ty = m["type"].as_str().unwrap();
        let v = g.get(key).unwrap();
        assert_eq!(v.value_type().name(), ty, "{key}");
        if let Value::Array(a) = v {
            let elem = m["elem"].as_str().unwrap();
            assert_eq!(a.elem_type().name(), elem, "{key}");
            let want = m["value"].as_array().unwrap();
            assert_eq!(a.len(), want.len(), "{key}");
            for (x, w) in a.iter().zip(want) {
                assert!(same(elem, &x, w), "{key}: {x:?} vs {w}");
            }
        } else {
            assert!(same(ty, &v, &m["value"]), "{key}: {v:?} vs {}", m["value"]);
        }
    }
    let tensors: Vec<_> = g.tensors().collect();
    let want = spec["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), want.len());
    for (k, (t, w)) in tensors.iter().zip(want).enumerate() {
        let ty = ggml_type(w["type"].as_str().unwrap());
        let shape: Vec<u64> = w["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(
            (t.name, t.ty, t.shape()),
            (w["name"].as_str().unwrap(), ty, &shape[..])
        );
        assert_eq!(
            g.tensor_data(t),
            &tensor_bytes(ty, &shape, k)[..],
            "{}",
            t.name
        );
    }
}

#[test]
fn gguf_py_reads_ours() {
    if skip() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("tramontane-gguf-py-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ours = dir.join("ours.gguf");
    write_ours(&ours);
    // Our own reader first, then gguf-py's.
    check_reads_as_sample(&std::fs::read(&ours).unwrap());
    python(&["check-sample", ours.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn we_read_gguf_py_files() {
    if skip() {
        return;
    }
    let dir =
        std::env::temp_dir().join(format!("tramontane-gguf-py-theirs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let theirs = dir.join("theirs.gguf");
    python(&["write-sample", theirs.to_str().unwrap()]);
    check_reads_as_sample(&std::fs::read(&theirs).unwrap());
    std::fs::remove_dir_all(&dir).ok();
}
