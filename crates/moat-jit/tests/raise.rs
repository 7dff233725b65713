//! Raised loops in the JIT (`moat_jit::raise`): raised code vs unraised code vs the interpreter,
//! which must agree on every result, error (kind and instruction) and byte of memory — on the loop
//! programs of `moat-raise/tests/loops` (near misses included) with random contents and lengths,
//! on generated loops of every raisable shape and near misses of them, and on the conformance
//! suite. Both code forms are checked: without a budget (a verified program's) and counting one,
//! with budgets that run out before, inside and after the loop.

use moat_exec::{Buffer, HelperRegistry, Linked, NoMaps, RunError, RunErrorKind};
use moat_interp::Prepared;
use moat_isa::datafile::DataFile;
use moat_isa::Program;
use moat_jit::{CodeOptions, Confinement, JitProgram, ProvenAccesses};
use moat_verify::{verify, Context, Env, VerifiedProgram};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// One program in its forms: interpreted, raised (the plan asked at every entry), raised with the
/// default short-loop check (short entries run the loop's own code), unraised.
struct Forms {
    interp: Prepared,
    raised: JitProgram,
    thresholded: JitProgram,
    plain: JitProgram,
}

fn forms(program: &Program, verified: Option<&VerifiedProgram>, budget: Option<u64>) -> Forms {
    let mut linked = Linked::new(program, &HelperRegistry::new(), &NoMaps).expect("links");
    if let Some(b) = budget {
        linked.set_budget(b);
    }
    let linked = Arc::new(linked);
    let interp = Prepared::lower(linked.clone()).expect("lowers");
    // Without a budget: the verifier's proofs; counting one: none.
    let proofs = match (verified, budget) {
        (Some(v), None) => v.proven_accesses(),
        _ => ProvenAccesses::none(),
    };
    let raising = verified
        .map(moat_jit::raise::raise_loops)
        .unwrap_or_default();
    let options = CodeOptions::new(Confinement::Unconfined);
    let always = CodeOptions {
        raise_min_elements: 0,
        ..options
    };
    let raised = JitProgram::new_raised(
        linked.clone(),
        Arc::new(interp.clone()),
        &proofs,
        &always,
        raising.clone(),
    )
    .expect("compiles");
    let thresholded = JitProgram::new_raised(
        linked.clone(),
        Arc::new(interp.clone()),
        &proofs,
        &options,
        raising,
    )
    .expect("compiles");
    let plain =
        JitProgram::new(linked, Arc::new(interp.clone()), &proofs, &options).expect("compiles");
    Forms {
        interp,
        raised,
        thresholded,
        plain,
    }
}

type Outcome = (Result<u64, RunError>, Vec<u8>);

fn run(
    f: impl Fn(&mut [Buffer<'_>], [u64; 5]) -> Result<u64, RunError>,
    data: &[u8],
    len: u64,
) -> Outcome {
    let mut bytes = data.to_vec();
    let args = [bytes.as_ptr() as u64, len, 0, 0, 0];
    let r = f(
        &mut [Buffer {
            bytes: &mut bytes,
            writable: true,
        }],
        args,
    );
    (r, bytes)
}

/// Runs the three forms on `data` with `r2` = `len`: all must agree on the result or error and on
/// memory. (Where the budget runs out, the JIT stops at the entry of the block it runs out in, so
/// that block's earlier stores may have run in the interpreter only: there the two JIT forms must
/// agree on memory with each other.)
fn agree(what: &str, forms: &Forms, data: &[u8], len: u64) {
    let a = run(|b, x| forms.interp.run_with(b, x), data, len);
    let b = run(|b, x| forms.plain.run_with(b, x), data, len);
    let c = run(|b, x| forms.raised.run_with(b, x), data, len);
    let d = run(|b, x| forms.thresholded.run_with(b, x), data, len);
    assert!(
        same(&a.0, &b.0) && same(&a.0, &c.0) && same(&a.0, &d.0),
        "{what}: interp {:x?}, unraised JIT {:x?}, raised JIT {:x?}, with the short-loop check {:x?}",
        a.0,
        b.0,
        c.0,
        d.0
    );
    let budget = matches!(&a.0, Err(e) if matches!(e.kind, RunErrorKind::Budget { .. }));
    assert!(
        budget || a.1 == b.1,
        "{what}: unraised JIT's memory differs"
    );
    assert!(
        b.1 == c.1,
        "{what}: raised JIT's memory differs (result {:x?})",
        a.0
    );
    assert!(
        b.1 == d.1,
        "{what}: raised JIT's memory with the short-loop check differs (result {:x?})",
        a.0
    );
}

/// Equal results or errors; errors compared by instruction and kind, out-of-bounds addresses
/// by where they lie relative to the run's memory (each engine runs on its own copy of the data).
fn same(a: &Result<u64, RunError>, b: &Result<u64, RunError>) -> bool {
    let norm = |r: &Result<u64, RunError>| match r {
        Ok(v) => format!("ok {v}"),
        Err(e) => match &e.kind {
            RunErrorKind::OutOfBounds { at, len, write, .. } => {
                format!("{} out of bounds {at:?} {len} {write}", e.pc)
            }
            kind => format!("{} {kind:?}", e.pc),
        },
    };
    norm(a) == norm(b)
}

/// Random contents: random bytes, or a repeating pattern of a few letters (so that areas compare
/// equal) with planted zeros, slashes and other bytes.
fn contents(rng: &mut Rng, size: usize) -> Vec<u8> {
    let mut data = vec![0u8; size];
    if rng.below(4) == 0 {
        data.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
    } else {
        let period = [1, 2, 8, 750, 752, 1 + rng.below(64) as usize][rng.below(6) as usize];
        for i in 0..size {
            data[i] = if i < period {
                b'a' + rng.below(3) as u8
            } else {
                data[i - period]
            };
        }
    }
    for _ in 0..rng.below(4) {
        let at = rng.below(size as u64) as usize;
        data[at] = [0, 0x2f, rng.next_u64() as u8][rng.below(3) as usize];
    }
    data
}

fn assemble(name: &str, source: &str) -> Program {
    let bytes =
        moat_isa::assemble_bytes(source).unwrap_or_else(|e| panic!("{name}: assemble: {e}"));
    Program::new_for_verifier(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Verifies, raises and compares `source` (a program over a `size`-byte buffer at `r1`, `r2` its
/// length) on `runs` random inputs, without a budget, with `r2` any length up to the size (in code
/// that checks every access) and with budgets around the run's own count. Returns the number of
/// raised loops.
fn check_program(name: &str, source: &str, size: usize, runs: u64, seed: u64) -> usize {
    let program = assemble(name, source);
    let verified = verify(&program, &Env::new(Context::Buffer { size: size as u64 }))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    // With the verifier's proofs the run must keep the verified contract (`r2` = the buffer's
    // size); other lengths run in code that checks every access (no proofs, a large budget).
    let free = forms(&program, Some(&verified), None);
    let checked = forms(&program, Some(&verified), Some(10_000_000));
    let raised = free.raised.raised_loops().len();
    assert_eq!(checked.raised.raised_loops().len(), raised, "{name}");
    let mut rng = Rng(seed | 1);
    for run in 0..runs {
        let data = contents(&mut rng, size);
        agree(&format!("{name} run {run}"), &free, &data, size as u64);
        let len = rng.below(size as u64 + 1);
        agree(
            &format!("{name} run {run}, r2 = {len}"),
            &checked,
            &data,
            len,
        );
    }
    // Counting a budget: small ones run out before the loop, inside it and after it.
    for budget in [1, 5, 9, 40, 200, 1000, 3000, 6000, 12_000, 100_000] {
        let counted = forms(&program, Some(&verified), Some(budget));
        for run in 0..4 {
            let data = contents(&mut rng, size);
            agree(
                &format!("{name} budget {budget} run {run}"),
                &counted,
                &data,
                size as u64,
            );
        }
    }
    raised
}

#[test]
fn loop_programs_agree_raised_unraised_and_interpreted() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../moat-raise/tests/loops");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("moat-raise/tests/loops")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "asm"))
        .collect();
    files.sort();
    let mut raised = 0;
    for path in &files {
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        let source = std::fs::read_to_string(path).expect("read");
        let n = check_program(&name, &source, 1500, 150, path.as_os_str().len() as u64);
        let expected = source.contains("# expect: raised");
        assert_eq!(n, usize::from(expected), "{name}: raised loops in the JIT");
        raised += n;
    }
    assert!(raised >= 10, "only {raised} loops raised");
}

/// A generated loop: `r3` counts from 0 in steps of `step` while `r3 < bound` (an immediate or
/// `r2`), over `r4 = r1 + r3`; the body per shape. Shapes 8 and 9 are the pointer form of
/// `examples/asm/checksum.s` instead: `r1` advances by `step`, `r2` (the bound, or the input's
/// length) counts down to the header's exit test.
fn generated(shape: u64, w: u64, step: u64, bound: Option<u64>, off: u64, v: u64) -> String {
    let (ld, st) = match w {
        1 => ("ldxb", "stx"),
        2 => ("ldxh", "stx"),
        4 => ("ldxw", "stx"),
        _ => ("ldxdw", "stx"),
    };
    let sz = match w {
        1 => "b",
        2 => "h",
        4 => "w",
        _ => "dw",
    };
    if shape >= 8 {
        let ld = match w {
            1 => "ldxb",
            2 => "ldxh",
            4 => "ldxw",
            _ => "ldxdw",
        };
        let (op, start) = if shape == 8 { ("add", "") } else { ("xor", "") };
        let len = match bound {
            Some(b) => format!("    mov %r2, {b}\n"),
            None => start.to_string(),
        };
        return format!(
            "{len}    mov %r0, 0\nloop:\n    jlt %r2, {w}, done\n    {ld} %r5, [%r1]\n    {op} %r0, %r5\n    add %r1, {step}\n    sub %r2, {step}\n    ja loop\ndone:\n    add %r0, %r2\n    exit\n"
        );
    }
    let test = match bound {
        Some(b) => format!("jlt %r3, {b}, loop"),
        None => "jlt %r3, %r2, loop".to_string(),
    };
    let body = match shape {
        // copy
        0 => format!("    {ld} %r5, [%r4]\n    {st}{sz} [%r4+{off}], %r5\n"),
        // fill
        1 => format!("    st{sz} [%r4], {v}\n"),
        // reduce (add, xor, or, and)
        2 => format!("    {ld} %r5, [%r4]\n    add %r0, %r5\n"),
        3 => format!("    {ld} %r5, [%r4]\n    xor %r0, %r5\n"),
        4 => format!("    {ld} %r5, [%r4]\n    or %r0, %r5\n"),
        5 => format!("    {ld} %r5, [%r4]\n    and %r0, %r5\n"),
        // find
        6 => format!("    {ld} %r5, [%r4]\n    jeq %r5, {v}, done\n"),
        // compare
        _ => format!("    {ld} %r5, [%r4]\n    {ld} %r6, [%r4+{off}]\n    jne %r5, %r6, done\n"),
    };
    let guard = if bound.is_none() {
        "    jeq %r2, 0, done\n"
    } else {
        ""
    };
    format!(
        "    mov %r0, 0\n    mov %r6, 0\n    mov %r3, 0\n{guard}loop:\n    mov %r4, %r1\n    add %r4, %r3\n{body}    add %r3, {step}\n    {test}\ndone:\n    add %r0, %r3\n    exit\n"
    )
}

#[test]
fn generated_loops_agree_raised_unraised_and_interpreted() {
    let mut rng = Rng(0x9e37_79b9);
    let mut raised = 0;
    let mut near = 0;
    let total = 60;
    for i in 0..total {
        let shape = i % 10;
        let w = [1, 2, 4, 8][rng.below(4) as usize];
        // Mostly the element's width; sometimes another stride (a near miss).
        let step = if rng.below(4) == 0 { w * 2 } else { w };
        let off = 1024u64;
        // The buffer is 2048 bytes; a loop over `r2` bytes is bounded by the verified size only
        // where it reads and writes below `off`.
        let bound = if shape == 0 || shape == 7 || rng.below(2) == 0 {
            Some(off - w * (1 + rng.below(8)))
        } else {
            None
        };
        let bound = bound.map(|b| b - b % step);
        let v = [0, 0x2f, 0x61][rng.below(3) as usize];
        let source = generated(shape, w, step, bound, off, v);
        let name = format!("generated {i} (shape {shape}, w {w}, step {step}, bound {bound:?})");
        let program = assemble(&name, &source);
        let Ok(verified) = verify(&program, &Env::new(Context::Buffer { size: 2048 })) else {
            // A shape the verifier cannot bound (a loop over `r2` reaching past the buffer) is
            // no test of raising.
            continue;
        };
        drop(verified);
        let n = check_program(&name, &source, 2048, 40, i + 1);
        if step != w {
            assert_eq!(n, 0, "{name}: a near miss (stride ≠ width) was raised");
            near += 1;
        }
        raised += n;
    }
    println!("generated: {raised} raised, {near} near misses left alone, of {total}");
    assert!(
        raised >= total as usize / 3,
        "only {raised} generated loops raised"
    );
}

/// The `shared/` folder (README.md, "Test data"): `$MOAT_SHARED`, else beside the checkout.
fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("MOAT_SHARED").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
        PathBuf::from,
    );
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none() && std::env::var_os("MOAT_SHARED").is_none(),
        "the shared test data folder {} does not exist",
        dir.display()
    );
    println!("skipped: no shared test data folder at {}", dir.display());
    None
}

/// The conformance suite, every file the verifier accepts (over its memory as a buffer): raised
/// and unraised code and the interpreter agree, and with the file's result.
#[test]
fn conformance_programs_agree_raised_unraised_and_interpreted() {
    let Some(shared) = shared_dir() else {
        return;
    };
    let dir = shared.join("conformance/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("conformance dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .collect();
    files.sort();
    let (mut checked, mut loops) = (0, 0);
    for path in &files {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let text = std::fs::read_to_string(path).expect("read");
        let file = DataFile::parse(&text).expect("parses");
        let Ok(program) = Program::new_for_verifier(&file.program().expect("program")) else {
            continue;
        };
        let env = Env::new(Context::Buffer {
            size: file.mem.len() as u64,
        });
        let Ok(verified) = verify(&program, &env) else {
            continue;
        };
        if Linked::new(&program, &HelperRegistry::new(), &NoMaps).is_err() {
            continue;
        }
        let f = forms(&program, Some(&verified), None);
        loops += f.raised.raised_loops().len();
        agree(&name, &f, &file.mem, file.mem.len() as u64);
        let (r, _) = run(
            |b, x| f.raised.run_with(b, x),
            &file.mem,
            file.mem.len() as u64,
        );
        if let (Ok(r), Some(want)) = (r, file.result) {
            assert_eq!(r, want, "{name}");
        }
        checked += 1;
    }
    println!("conformance: {checked} verified files agree; {loops} loops raised among them");
    assert!(checked > 0);
}
