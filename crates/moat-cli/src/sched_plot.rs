//! The PNG plots of `moat sched-bench` and `moat cxlsim` (plotters, bitmap backend): one panel per latency metric,
//! latency (µs, log scale) against offered load, a line per system. Text is drawn with DejaVu
//! Sans from the system's fonts; where that font is missing the plot has no labels.

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;
use std::sync::OnceLock;

/// Fonts tried, in order.
const FONTS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Registers the font once; whether text can be drawn.
fn font() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        FONTS.iter().any(|path| {
            std::fs::read(path).ok().is_some_and(|bytes| {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
            })
        })
    })
}

/// Line colours, one per system.
const COLOURS: [RGBColor; 11] = [
    RGBColor(0, 0, 0),
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
    RGBColor(188, 189, 34),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// One metric's panel: (metric, [(system, [(load %, µs)])]).
pub type Panel = (String, Vec<(String, Vec<(f64, f64)>)>);

/// Writes `panels` side by side (two per row) to `path`.
pub fn plot(path: &Path, title: &str, panels: &[Panel]) -> Result<()> {
    let text = font();
    let rows = panels.len().div_ceil(2).max(1);
    let size = (1400u32, 520 * rows as u32);
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let root = if text {
        root.titled(
            &format!("moat sched-bench: {title} service times, latency vs offered load"),
            ("sans-serif", 24),
        )
        .map_err(|e| anyhow!("{e}"))?
    } else {
        root
    };
    let areas = root.split_evenly((rows, 2));
    for ((metric, series), area) in panels.iter().zip(areas.iter()) {
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for (_, points) in series {
            for &(_, y) in points {
                if y > 0.0 {
                    lo = lo.min(y);
                    hi = hi.max(y);
                }
            }
        }
        if lo > hi {
            (lo, hi) = (0.1, 10.0);
        }
        let (x0, x1) = series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|&(x, _)| x))
            .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
        let (x0, x1) = if x0 < x1 { (x0, x1) } else { (0.0, 100.0) };
        let mut builder = ChartBuilder::on(area);
        builder.margin(14);
        if text {
            builder
                .caption(format!("{metric} latency (µs)"), ("sans-serif", 20))
                .x_label_area_size(40)
                .y_label_area_size(70);
        }
        let mut chart = builder
            .build_cartesian_2d(x0..x1, (lo * 0.8..hi * 1.25).log_scale())
            .map_err(|e| anyhow!("{e}"))?;
        let mut mesh = chart.configure_mesh();
        mesh.x_desc("offered load (%)").y_desc("µs");
        if !text {
            mesh.disable_x_mesh().disable_y_mesh();
        }
        if text {
            mesh.draw().map_err(|e| anyhow!("{e}"))?;
        }
        for (i, (name, points)) in series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let style = ShapeStyle::from(&colour).stroke_width(2);
            let points: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.1 > 0.0).collect();
            let drawn = chart
                .draw_series(LineSeries::new(points.clone(), style))
                .map_err(|e| anyhow!("{e}"))?;
            if text {
                drawn.label(name.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
            }
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                .map_err(|e| anyhow!("{e}"))?;
        }
        if text {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(|e| anyhow!("{e}"))?;
        }
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// One series of `(x, y)` as a line (linear axes, y from 0): `moat cxlsim`'s delay timeline.
pub fn timeline(path: &Path, title: &str, x: &str, y: &str, points: &[(f64, f64)]) -> Result<()> {
    let text = font();
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let x1 = points.iter().map(|p| p.0).fold(0.0f64, f64::max).max(1e-3);
    let y1 = points.iter().map(|p| p.1).fold(0.0f64, f64::max).max(1e-3) * 1.1;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(16);
    if text {
        builder
            .caption(title, ("sans-serif", 22))
            .x_label_area_size(40)
            .y_label_area_size(70);
    }
    let mut chart = builder
        .build_cartesian_2d(0.0..x1, 0.0..y1)
        .map_err(|e| anyhow!("{e}"))?;
    if text {
        chart
            .configure_mesh()
            .x_desc(x)
            .y_desc(y)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    }
    let colour = COLOURS[1];
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            ShapeStyle::from(&colour).stroke_width(2),
        ))
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
