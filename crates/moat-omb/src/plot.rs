//! Line plots as PNG files without dependencies: message size (log2) against latency or bandwidth
//! (log10), one coloured line per transport, a legend, axis labels in a 3×5 pixel font; encoded as
//! an 8-bit palette PNG (rows filtered "Up", deflated with the fixed Huffman code and runs).

use std::io;
use std::path::Path;

/// One line of a plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend's name.
    pub name: String,
    /// `(x, y)` points, both positive.
    pub points: Vec<(f64, f64)>,
}

const W: usize = 960;
const H: usize = 600;
const LEFT: usize = 90;
const RIGHT: usize = 30;
const TOP: usize = 50;
const BOTTOM: usize = 70;
const PALETTE: [[u8; 3]; 10] = [
    [255, 255, 255],
    [0, 0, 0],
    [215, 215, 215],
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
];

/// The 3×5 font: for each character, 15 bits, rows top to bottom, left pixel first.
const FONT: &[(char, &str)] = &[
    ('0', "111101101101111"),
    ('1', "010110010010111"),
    ('2', "111001111100111"),
    ('3', "111001111001111"),
    ('4', "101101111001001"),
    ('5', "111100111001111"),
    ('6', "111100111101111"),
    ('7', "111001001001001"),
    ('8', "111101111101111"),
    ('9', "111101111001111"),
    ('A', "010101111101101"),
    ('B', "110101110101110"),
    ('C', "011100100100011"),
    ('D', "110101101101110"),
    ('E', "111100110100111"),
    ('F', "111100110100100"),
    ('G', "011100101101011"),
    ('H', "101101111101101"),
    ('I', "111010010010111"),
    ('J', "001001001101010"),
    ('K', "101101110101101"),
    ('L', "100100100100111"),
    ('M', "101111111101101"),
    ('N', "110101101101101"),
    ('O', "010101101101010"),
    ('P', "110101110100100"),
    ('Q', "010101101110011"),
    ('R', "110101110101101"),
    ('S', "011100010001110"),
    ('T', "111010010010010"),
    ('U', "101101101101111"),
    ('V', "101101101101010"),
    ('W', "101101111111101"),
    ('X', "101101010101101"),
    ('Y', "101101010010010"),
    ('Z', "111001010100111"),
    ('.', "000000000000010"),
    ('-', "000000111000000"),
    ('/', "001001010100100"),
    ('(', "010100100100010"),
    (')', "010001001001010"),
    (':', "000010000010000"),
    ('%', "101001010100101"),
    ('_', "000000000000111"),
    (',', "000000000010100"),
    ('=', "000111000111000"),
    ('+', "000010111010000"),
];

struct Canvas {
    px: Vec<u8>,
}

impl Canvas {
    fn new() -> Canvas {
        Canvas { px: vec![0; W * H] }
    }

    fn set(&mut self, x: i64, y: i64, c: u8) {
        if (0..W as i64).contains(&x) && (0..H as i64).contains(&y) {
            self.px[y as usize * W + x as usize] = c;
        }
    }

    fn rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: u8) {
        for dy in 0..h {
            for dx in 0..w {
                self.set(x + dx, y + dy, c);
            }
        }
    }

    /// A line `thick` pixels wide (Bresenham, squares along it).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: u8, thick: i64) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.rect(x - thick / 2, y - thick / 2, thick, thick, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Text at `(x, y)` (top left), `scale` pixels per font pixel; returns the width drawn.
    fn text(&mut self, x: i64, y: i64, s: &str, c: u8, scale: i64) -> i64 {
        let mut cx = x;
        for ch in s.chars().map(|c| c.to_ascii_uppercase()) {
            if let Some((_, bits)) = FONT.iter().find(|(f, _)| *f == ch) {
                for (i, b) in bits.bytes().enumerate() {
                    if b == b'1' {
                        let (col, row) = ((i % 3) as i64, (i / 3) as i64);
                        self.rect(cx + col * scale, y + row * scale, scale, scale, c);
                    }
                }
            }
            cx += 4 * scale;
        }
        cx - x
    }

    fn text_width(s: &str, scale: i64) -> i64 {
        s.chars().count() as i64 * 4 * scale
    }
}

/// A size label: 1, 16, 256, 4K, 64K, 1M.
fn size_label(v: f64) -> String {
    let v = v.round() as u64;
    if v >= 1 << 20 {
        format!("{}M", v >> 20)
    } else if v >= 1 << 10 {
        format!("{}K", v >> 10)
    } else {
        v.to_string()
    }
}

/// A decade label: 0.01, 0.1, 1, 10, …
fn decade_label(e: i32) -> String {
    if e < 0 {
        format!("{}", 10f64.powi(e))
    } else {
        format!("{}", 10u64.pow(e as u32))
    }
}

/// Draws `series` with log axes and writes a PNG to `path`.
pub fn plot(
    path: &Path,
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[Series],
) -> io::Result<()> {
    let mut c = Canvas::new();
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts.filter(|(x, y)| *x > 0.0 && *y > 0.0) {
        xmin = xmin.min(x);
        xmax = xmax.max(x);
        ymin = ymin.min(y);
        ymax = ymax.max(y);
    }
    if xmin > xmax {
        (xmin, xmax, ymin, ymax) = (1.0, 2.0, 1.0, 10.0);
    }
    let (lx0, lx1) = (
        xmin.log2().floor(),
        xmax.log2().ceil().max(xmin.log2().floor() + 1.0),
    );
    let (ly0, ly1) = (
        ymin.log10().floor(),
        ymax.log10().ceil().max(ymin.log10().floor() + 1.0),
    );
    let (pw, ph) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
    let px = |x: f64| LEFT as i64 + ((x.log2() - lx0) / (lx1 - lx0) * pw).round() as i64;
    let py = |y: f64| (H - BOTTOM) as i64 - ((y.log10() - ly0) / (ly1 - ly0) * ph).round() as i64;
    // Grid and tick labels.
    let mut e = lx0 as i64;
    while e <= lx1 as i64 {
        let x = px(2f64.powi(e as i32));
        if e % 2 == 0 || lx1 - lx0 <= 12.0 {
            c.line((x, TOP as i64), (x, (H - BOTTOM) as i64), 2, 1);
            let l = size_label(2f64.powi(e as i32));
            c.text(
                x - Canvas::text_width(&l, 2) / 2,
                (H - BOTTOM + 8) as i64,
                &l,
                1,
                2,
            );
        }
        e += 1;
    }
    for e in ly0 as i32..=ly1 as i32 {
        let y = py(10f64.powi(e));
        c.line((LEFT as i64, y), ((W - RIGHT) as i64, y), 2, 1);
        let l = decade_label(e);
        c.text(LEFT as i64 - 8 - Canvas::text_width(&l, 2), y - 5, &l, 1, 2);
    }
    c.line(
        (LEFT as i64, TOP as i64),
        (LEFT as i64, (H - BOTTOM) as i64),
        1,
        2,
    );
    c.line(
        (LEFT as i64, (H - BOTTOM) as i64),
        ((W - RIGHT) as i64, (H - BOTTOM) as i64),
        1,
        2,
    );
    // Lines.
    for (i, s) in series.iter().enumerate() {
        let colour = 3 + (i % (PALETTE.len() - 3)) as u8;
        let mut prev = None;
        for &(x, y) in s.points.iter().filter(|(x, y)| *x > 0.0 && *y > 0.0) {
            let p = (px(x), py(y));
            if let Some(q) = prev {
                c.line(q, p, colour, 3);
            }
            c.rect(p.0 - 3, p.1 - 3, 7, 7, colour);
            prev = Some(p);
        }
        let ly = (TOP + 12 + i * 22) as i64;
        c.rect(LEFT as i64 + 16, ly, 24, 10, colour);
        c.text(LEFT as i64 + 48, ly, &s.name, 1, 2);
    }
    // Titles.
    let tw = Canvas::text_width(title, 3);
    c.text((W as i64 - tw) / 2, 12, title, 1, 3);
    let xw = Canvas::text_width(xlabel, 2);
    c.text((W as i64 - xw) / 2, (H - 30) as i64, xlabel, 1, 2);
    c.text(8, 20, ylabel, 1, 2);
    std::fs::write(path, png(&c.px))
}

/// The PNG file of a `W`×`H` palette image.
fn png(px: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity((W + 1) * H);
    for y in 0..H {
        raw.push(2); // Filter "Up": each byte minus the one above.
        for x in 0..W {
            let above = if y > 0 { px[(y - 1) * W + x] } else { 0 };
            raw.push(px[y * W + x].wrapping_sub(above));
        }
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(W as u32).to_be_bytes());
    ihdr.extend_from_slice(&(H as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 3, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"PLTE", &PALETTE.concat());
    chunk(&mut out, b"IDAT", &zlib(&raw));
    chunk(&mut out, b"IEND", &[]);
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut c = crc32(0xffff_ffff, kind);
    c = crc32(c, data);
    out.extend_from_slice(&(c ^ 0xffff_ffff).to_be_bytes());
}

fn crc32(mut c: u32, data: &[u8]) -> u32 {
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    c
}

/// Bits written least significant first, as deflate wants.
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, v: u32, n: u32) {
        self.acc |= u64::from(v) << self.n;
        self.n += n;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// A Huffman code (most significant bit first).
    fn code(&mut self, code: u32, len: u32) {
        let mut r = 0;
        for i in 0..len {
            r |= ((code >> i) & 1) << (len - 1 - i);
        }
        self.put(r, len);
    }

    fn literal(&mut self, sym: u32) {
        match sym {
            0..=143 => self.code(0x30 + sym, 8),
            144..=255 => self.code(0x190 + sym - 144, 9),
            256..=279 => self.code(sym - 256, 7),
            _ => self.code(0xc0 + sym - 280, 8),
        }
    }

    /// A match of `len` (3..=258) at distance 1.
    fn run(&mut self, len: u32) {
        const BASE: [u32; 29] = [
            3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99,
            115, 131, 163, 195, 227, 258,
        ];
        const EXTRA: [u32; 29] = [
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
        ];
        let i = BASE.iter().rposition(|&b| b <= len).unwrap_or(0);
        self.literal(257 + i as u32);
        self.put(len - BASE[i], EXTRA[i]);
        self.code(0, 5); // Distance code 0: distance 1.
    }
}

/// A zlib stream of `data`: one fixed-Huffman block of literals and runs.
fn zlib(data: &[u8]) -> Vec<u8> {
    let mut b = Bits {
        out: vec![0x78, 0x01],
        acc: 0,
        n: 0,
    };
    b.put(1, 1); // Final block.
    b.put(1, 2); // Fixed Huffman codes.
    let mut i = 0;
    while i < data.len() {
        b.literal(u32::from(data[i]));
        let mut run = 0;
        while i + 1 + run < data.len() && data[i + 1 + run] == data[i] && run < 258 {
            run += 1;
        }
        if run >= 3 {
            b.run(run as u32);
            i += 1 + run;
        } else {
            i += 1;
        }
    }
    b.literal(256);
    if b.n > 0 {
        b.out.push(b.acc as u8);
    }
    let (mut s1, mut s2) = (1u32, 0u32);
    for &x in data {
        s1 = (s1 + u32::from(x)) % 65521;
        s2 = (s2 + s1) % 65521;
    }
    b.out.extend_from_slice(&((s2 << 16) | s1).to_be_bytes());
    b.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plot_is_a_png() {
        let path = std::env::temp_dir().join(format!("moat-omb-plot-{}.png", std::process::id()));
        let s = Series {
            name: "pool".into(),
            points: vec![(1.0, 0.2), (1024.0, 0.5), (4194304.0, 400.0)],
        };
        plot(&path, "Latency", "Message size (bytes)", "us", &[s]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(bytes.len() < 200_000, "{} bytes", bytes.len());
        assert_eq!(crc32(0xffff_ffff, b"IEND") ^ 0xffff_ffff, 0xae42_6082);
    }
}
