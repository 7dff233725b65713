//! What the tests of `moat-raise` share: the loop programs of `tests/loops/*.asm`, assembled,
//! verified (context: a 1500-byte buffer), with the expectation each file states.

use moat_verify::{verify, Context, Env, VerifiedProgram};

/// What a loop file expects of its loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Raised; the plan's text up to its element count (operation and operands).
    Raised(String),
    /// Not raised, for a reason containing this text.
    NotRaised(String),
}

/// One loop file.
pub struct LoopFile {
    /// The file's stem.
    pub name: String,
    /// The program, verified.
    pub verified: VerifiedProgram,
    /// Its `# expect:` line.
    pub expect: Expect,
}

/// Size of the context buffer the loop programs are verified with.
const CTX: usize = 1500;

/// Every `tests/loops/*.asm`, sorted by name.
pub fn loops() -> Vec<LoopFile> {
    let dir = format!("{}/tests/loops", env!("CARGO_MANIFEST_DIR"));
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/loops")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "asm"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let source = std::fs::read_to_string(&path).expect("read");
            let line = source
                .lines()
                .find_map(|l| l.trim().strip_prefix("# expect:"))
                .unwrap_or_else(|| panic!("{name}: no `# expect:` line"))
                .trim();
            let expect = if let Some(why) = line.strip_prefix("not raised:") {
                Expect::NotRaised(why.trim().to_string())
            } else if let Some(plan) = line.strip_prefix("raised") {
                Expect::Raised(plan.trim().to_string())
            } else {
                panic!("{name}: `# expect:` is neither `raised ...` nor `not raised: ...`");
            };
            let bytes = moat_isa::assemble_bytes(&source)
                .unwrap_or_else(|e| panic!("{name}: assemble: {e}"));
            let program = moat_isa::Program::new_for_verifier(&bytes)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let verified = verify(&program, &Env::new(Context::Buffer { size: CTX as u64 }))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            LoopFile {
                name,
                verified,
                expect,
            }
        })
        .collect()
}
