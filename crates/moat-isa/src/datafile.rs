//! Parser for conformance test files (`*.data`): `-- asm`, `-- raw`, `-- mem`, `-- result`, `-- error`
//! sections (format: `../shared/conformance/README.md`).
//!
//! The program is `-- raw` when present (one 64-bit slot per line, `0x5566778800000018`, or eight bytes
//! `07 00 01 00 01 00 00 00`), else the assembled `-- asm`.

use crate::asm::{assemble_bytes, AsmError};
use crate::insn::RawInsn;
use thiserror::Error;

/// A parsed conformance test file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataFile {
    /// The `-- asm` text, if any.
    pub asm: Option<String>,
    /// The `-- raw` bytecode, if any.
    pub raw: Option<Vec<u8>>,
    /// The input memory (`-- mem`), empty when absent.
    pub mem: Vec<u8>,
    /// The expected r0 (`-- result`).
    pub result: Option<u64>,
    /// The expected error text (`-- error`).
    pub error: Option<String>,
    /// The file line where the `-- asm` text starts, for error messages.
    pub asm_first_line: usize,
}

/// Why a test file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DataFileError {
    /// A `-- NAME` header names no known section.
    #[error("line {line}: unknown section `-- {name}`")]
    UnknownSection {
        /// 1-based line.
        line: usize,
        /// The section name.
        name: String,
    },
    /// A hex byte or number in `-- mem`, `-- raw` or `-- result` is malformed.
    #[error("line {line}: invalid hex `{text}` in `-- {section}`")]
    BadHex {
        /// 1-based line.
        line: usize,
        /// The section.
        section: &'static str,
        /// The offending token.
        text: String,
    },
    /// A `-- raw` line is neither one 64-bit number nor eight bytes.
    #[error("line {line}: raw instruction must be one 0x-prefixed 64-bit value or 8 bytes")]
    BadRawLine {
        /// 1-based line.
        line: usize,
    },
    /// Neither `-- asm` nor `-- raw` is present.
    #[error("no program: the file has neither an `-- asm` nor a `-- raw` section")]
    NoProgram,
    /// The `-- asm` section does not assemble.
    #[error("in `-- asm` (starting at line {first_line})")]
    Asm {
        /// Line of the file where the asm section starts (its line 1).
        first_line: usize,
        /// The assembler error.
        #[source]
        source: AsmError,
    },
}

#[derive(Clone, Copy, PartialEq)]
enum Section {
    Preamble,
    Asm,
    Raw,
    Mem,
    Result,
    Error,
    Ignored,
}

fn parse_hex_u64(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    u64::from_str_radix(digits, 16).ok()
}

impl DataFile {
    /// Parses the text of a `.data` file.
    pub fn parse(text: &str) -> Result<DataFile, DataFileError> {
        let mut out = DataFile::default();
        let mut section = Section::Preamble;
        let mut asm = String::new();
        let mut asm_start = 0;
        let mut raw = Vec::new();
        let mut error = String::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if let Some(name) = line.strip_prefix("--") {
                let name = name.trim();
                section = match name {
                    "asm" => {
                        asm_start = n + 1;
                        out.asm = Some(String::new());
                        Section::Asm
                    }
                    "raw" => {
                        out.raw = Some(Vec::new());
                        Section::Raw
                    }
                    "mem" => Section::Mem,
                    "result" => Section::Result,
                    "error" => {
                        out.error = Some(String::new());
                        Section::Error
                    }
                    "c" | "no register offset" | "no jit" => Section::Ignored,
                    _ => {
                        return Err(DataFileError::UnknownSection {
                            line: n,
                            name: name.to_string(),
                        })
                    }
                };
                continue;
            }
            match section {
                Section::Asm => {
                    asm.push_str(line);
                    asm.push('\n');
                }
                Section::Error => {
                    error.push_str(line.trim());
                }
                Section::Raw => {
                    let body = line.split('#').next().unwrap_or("").trim();
                    if body.is_empty() {
                        continue;
                    }
                    let tokens: Vec<&str> = body.split_whitespace().collect();
                    let slot = if tokens.len() == 1 && body.starts_with("0x") {
                        parse_hex_u64(body).map(RawInsn::from_u64).ok_or_else(|| {
                            DataFileError::BadHex {
                                line: n,
                                section: "raw",
                                text: body.to_string(),
                            }
                        })?
                    } else if tokens.len() == 8 {
                        let mut b = [0u8; 8];
                        for (dst, tok) in b.iter_mut().zip(&tokens) {
                            *dst =
                                u8::from_str_radix(tok, 16).map_err(|_| DataFileError::BadHex {
                                    line: n,
                                    section: "raw",
                                    text: (*tok).to_string(),
                                })?;
                        }
                        RawInsn::from_bytes(b)
                    } else {
                        return Err(DataFileError::BadRawLine { line: n });
                    };
                    raw.extend_from_slice(&slot.to_bytes());
                }
                Section::Mem => {
                    for tok in line.split('#').next().unwrap_or("").split_whitespace() {
                        let b = u8::from_str_radix(tok, 16).map_err(|_| DataFileError::BadHex {
                            line: n,
                            section: "mem",
                            text: tok.to_string(),
                        })?;
                        out.mem.push(b);
                    }
                }
                Section::Result => {
                    let body = line.split('#').next().unwrap_or("").trim();
                    if body.is_empty() {
                        continue;
                    }
                    out.result =
                        Some(parse_hex_u64(body).ok_or_else(|| DataFileError::BadHex {
                            line: n,
                            section: "result",
                            text: body.to_string(),
                        })?);
                }
                Section::Preamble | Section::Ignored => {}
            }
        }
        if out.asm.is_some() {
            out.asm = Some(asm);
            out.asm_first_line = asm_start;
        }
        if out.raw.is_some() {
            out.raw = Some(raw);
        }
        if out.error.is_some() {
            out.error = Some(error);
        }
        Ok(out)
    }

    /// The program's bytecode: `-- raw` when present, else the assembled `-- asm`.
    pub fn program(&self) -> Result<Vec<u8>, DataFileError> {
        if let Some(raw) = &self.raw {
            return Ok(raw.clone());
        }
        let asm = self.asm.as_deref().ok_or(DataFileError::NoProgram)?;
        assemble_bytes(asm).map_err(|source| DataFileError::Asm {
            first_line: self.asm_first_line,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_takes_precedence_and_both_raw_forms_parse() {
        let f = DataFile::parse(
            "-- asm\nmov %r0, 1\nexit\n-- raw\n0x00000001000000b7\n95 00 00 00 00 00 00 00\n-- mem\naa bb\n-- result\n0x1\n",
        )
        .expect("parses");
        assert_eq!(f.mem, vec![0xaa, 0xbb]);
        assert_eq!(f.result, Some(1));
        assert_eq!(
            f.program().expect("program"),
            crate::asm::assemble_bytes("mov %r0, 1\nexit").expect("asm")
        );
    }

    #[test]
    fn unknown_sections_and_missing_programs_are_errors() {
        assert!(matches!(
            DataFile::parse("-- Unknown directive\n"),
            Err(DataFileError::UnknownSection { line: 1, .. })
        ));
        let f = DataFile::parse("-- result\n0x0\n").expect("parses");
        assert_eq!(f.program(), Err(DataFileError::NoProgram));
    }
}
