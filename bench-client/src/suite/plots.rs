//! The reports' plots, as SVG text (plotters' SVG backend only: no fonts are read, text is
//! left to the browser). The same figures give the same bytes, so `bench-client report`
//! writes the plots of a run again exactly as the run did.
//!
//! - [`cpu_bars`]: server CPU per request per server in one cell, a bar at the median with the
//!   interval the report's table gives;
//! - [`lines`]: one line per server against a logarithmic x axis (the scale preset's req/s
//!   and p99 against concurrency, memory per connection against idle connections).

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::stats::Estimate;

/// Width of every plot, pixels.
pub const WIDTH: u32 = 900;
/// Height of a line plot, pixels.
pub const LINE_HEIGHT: u32 = 480;

/// A distinct colour per server: its place in the suite's list of servers.
fn colour_of(name: &str) -> RGBColor {
    // Okabe-Ito's colour-blind-friendly eight first, then Tol's; epoll (the reference of
    // the ratios) in near-black. One per server of the suite, in its order (mio, the latest,
    // last: Tol's sand).
    const PALETTE: [RGBColor; 19] = [
        RGBColor(0, 114, 178),
        RGBColor(230, 159, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
        RGBColor(86, 180, 233),
        RGBColor(213, 94, 0),
        RGBColor(40, 40, 40),
        RGBColor(240, 200, 40),
        RGBColor(51, 34, 136),
        RGBColor(136, 34, 85),
        RGBColor(17, 119, 51),
        RGBColor(130, 130, 130),
        RGBColor(170, 68, 153),
        RGBColor(68, 170, 153),
        RGBColor(153, 153, 51),
        RGBColor(204, 102, 119),
        RGBColor(102, 51, 0),
        RGBColor(136, 204, 238),
        RGBColor(221, 204, 119),
    ];
    let index = super::servers()
        .iter()
        .position(|s| s.name == name)
        .unwrap_or(PALETTE.len() - 1);
    PALETTE[index % PALETTE.len()]
}

/// A server's figure and interval in one cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Server name.
    pub name: String,
    /// Median and interval.
    pub estimate: Estimate,
}

fn svg_text(draw: impl FnOnce(DrawingArea<SVGBackend, Shift>), size: (u32, u32)) -> String {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        let _ = root.fill(&WHITE);
        draw(root.clone());
        let _ = root.present();
    }
    text
}

/// A horizontal bar per server: server CPU per request in µs, median and interval, in the
/// order given (top to bottom).
pub fn cpu_bars(title: &str, bars: &[Bar]) -> String {
    let n = bars.len().max(1) as i32;
    let height = 90 + 24 * n as u32;
    let top = bars
        .iter()
        .map(|b| b.estimate.high.max(b.estimate.median))
        .fold(0.0f64, f64::max);
    let x_max = if top > 0.0 { top * 1.15 } else { 1.0 };
    svg_text(
        |root| {
            let Ok(mut chart) = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 17))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(120)
                // Integer ranges are inclusive here: 0..n-1 is n segments.
                .build_cartesian_2d(0.0..x_max, (0..(n - 1).max(1)).into_segmented())
            else {
                return;
            };
            let at = |i: usize| n - 1 - i as i32;
            let _ = chart
                .configure_mesh()
                .disable_y_mesh()
                .y_labels(n as usize)
                .y_label_formatter(&|v| match v {
                    SegmentValue::CenterOf(k) => usize::try_from(n - 1 - k)
                        .ok()
                        .and_then(|i| bars.get(i))
                        .map_or(String::new(), |b| b.name.clone()),
                    _ => String::new(),
                })
                .x_desc("server CPU per request, µs (median; whiskers: the interval)")
                .x_label_formatter(&|v| tick(*v))
                .label_style(("sans-serif", 13))
                .light_line_style(RGBColor(242, 242, 242))
                .draw();
            let _ = chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(at(i))),
                        (b.estimate.median, SegmentValue::Exact(at(i) + 1)),
                    ],
                    colour_of(&b.name).mix(0.8).filled(),
                );
                bar.set_margin(4, 4, 0, 0);
                bar
            }));
            let _ = chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
                ErrorBar::new_horizontal(
                    SegmentValue::CenterOf(at(i)),
                    b.estimate.low,
                    b.estimate.median,
                    b.estimate.high,
                    BLACK.stroke_width(1),
                    8,
                )
            }));
            let _ = chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
                Text::new(
                    format!("{:.1}", b.estimate.median),
                    (
                        b.estimate.high.max(b.estimate.median) + x_max * 0.01,
                        SegmentValue::CenterOf(at(i)),
                    ),
                    TextStyle::from(("sans-serif", 12)).pos(Pos::new(HPos::Left, VPos::Center)),
                )
            }));
        },
        (WIDTH, height),
    )
}

/// One server's points, x ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Server name.
    pub name: String,
    /// (x, y) points; y must be positive on a logarithmic axis (others are left out).
    pub points: Vec<(f64, f64)>,
}

/// The axes of a line plot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Axes<'a> {
    /// Caption.
    pub title: &'a str,
    /// x axis description (the axis is logarithmic).
    pub x_desc: &'a str,
    /// y axis description.
    pub y_desc: &'a str,
    /// A logarithmic y axis.
    pub log_y: bool,
}

/// Powers of ten between `low` and `high`, widened to whole decades; 1 to 10 when there is
/// nothing finite and positive to show.
fn decades(low: f64, high: f64) -> (f64, f64) {
    if !(low.is_finite() && high.is_finite() && low > 0.0 && high > 0.0) {
        return (1.0, 10.0);
    }
    let low = 10f64.powf(low.log10().floor());
    let high = 10f64.powf(high.max(low).log10().ceil());
    (low, if high > low { high } else { low * 10.0 })
}

/// `1,000`, `0.01`, `2.5`: a tick label.
fn tick(v: f64) -> String {
    if v >= 1.0 && (v - v.round()).abs() < 1e-9 {
        super::scale::thousands(v.round() as usize)
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A line and its points per server against a logarithmic x axis; the legend on the right.
pub fn lines(axes: Axes, series: &[Series]) -> String {
    let shown: Vec<Series> = series
        .iter()
        .map(|s| Series {
            name: s.name.clone(),
            points: s
                .points
                .iter()
                .copied()
                .filter(|&(x, y)| x > 0.0 && y.is_finite() && (!axes.log_y || y > 0.0))
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    let all = || shown.iter().flat_map(|s| s.points.iter().copied());
    let (x_low, x_high) = decades(
        all().map(|p| p.0).fold(f64::INFINITY, f64::min),
        all().map(|p| p.0).fold(0.0, f64::max),
    );
    let y_top = all().map(|p| p.1).fold(0.0, f64::max);
    let nothing = shown.is_empty();
    let y_bottom = all().map(|p| p.1).fold(f64::INFINITY, f64::min);
    svg_text(
        |root| {
            let (plot, legend) = root.split_horizontally(WIDTH - 150);
            let mut builder = ChartBuilder::on(&plot);
            let built = builder
                .caption(axes.title, ("sans-serif", 17))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(70);
            let x = (x_low..x_high).log_scale();
            if axes.log_y {
                let (low, high) = decades(y_bottom, y_top);
                let Ok(mut chart) = built.build_cartesian_2d(x, (low..high).log_scale()) else {
                    return;
                };
                draw_lines(&mut chart, axes, &shown);
            } else {
                let high = if y_top > 0.0 { y_top * 1.1 } else { 1.0 };
                let Ok(mut chart) = built.build_cartesian_2d(x, 0.0..high) else {
                    return;
                };
                draw_lines(&mut chart, axes, &shown);
            }
            if nothing {
                let _ = plot.draw(&Text::new(
                    "no level held by any server",
                    (WIDTH as i32 / 3, LINE_HEIGHT as i32 / 2),
                    ("sans-serif", 15),
                ));
            }
            for (k, s) in shown.iter().enumerate() {
                let y = 50 + 20 * k as i32;
                let colour = colour_of(&s.name);
                let _ = legend.draw(&PathElement::new(
                    vec![(4, y), (28, y)],
                    colour.stroke_width(2),
                ));
                let _ = legend.draw(&Circle::new((16, y), 3, colour.filled()));
                let _ = legend.draw(&Text::new(s.name.clone(), (34, y - 7), ("sans-serif", 13)));
            }
        },
        (WIDTH, LINE_HEIGHT),
    )
}

fn draw_lines<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<LogCoord<f64>, Y>>,
    axes: Axes,
    series: &[Series],
) where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let _ = chart
        .configure_mesh()
        .x_desc(axes.x_desc)
        .y_desc(axes.y_desc)
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .label_style(("sans-serif", 13))
        .light_line_style(RGBColor(235, 235, 235))
        .draw();
    for s in series {
        let colour = colour_of(&s.name);
        let _ = chart.draw_series(LineSeries::new(
            s.points.iter().copied(),
            colour.stroke_width(2),
        ));
        let _ = chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, colour.filled())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(median: f64, low: f64, high: f64) -> Estimate {
        Estimate { median, low, high }
    }

    /// The SVG has a text element holding exactly `text`.
    fn has_text(svg: &str, text: &str) -> bool {
        svg.contains(&format!(">\n{text}\n</text>"))
    }

    #[test]
    fn bars_are_svg_with_every_server_and_the_same_bytes_each_time() {
        let bars = vec![
            Bar {
                name: "epoll".into(),
                estimate: estimate(6.4, 6.2, 8.4),
            },
            Bar {
                name: "fork".into(),
                estimate: estimate(275.8, 237.7, 296.5),
            },
        ];
        let svg = cpu_bars("a <cell> & its title", &bars);
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(has_text(&svg, "epoll") && has_text(&svg, "fork") && has_text(&svg, "275.8"));
        assert!(
            has_text(&svg, "a &lt;cell&gt; &amp; its title"),
            "text is escaped"
        );
        assert_eq!(svg, cpu_bars("a <cell> & its title", &bars));
        assert_ne!(svg, cpu_bars("another", &bars));
    }

    #[test]
    fn lines_leave_out_what_a_log_axis_cannot_show() {
        let series = vec![
            Series {
                name: "epoll".into(),
                points: vec![(1000.0, 10_339.0), (10_000.0, 10_300.0)],
            },
            Series {
                name: "nginx".into(),
                points: vec![(1000.0, -20.0)],
            },
        ];
        let axes = Axes {
            title: "memory",
            x_desc: "idle connections",
            y_desc: "bytes per connection",
            log_y: true,
        };
        let svg = lines(axes, &series);
        assert!(has_text(&svg, "epoll"));
        assert!(
            !has_text(&svg, "nginx"),
            "nothing of it to show on a log axis"
        );
        assert!(has_text(&svg, "10,000"), "x ticks are written out");
        assert_eq!(svg, lines(axes, &series));
    }

    #[test]
    fn a_plot_with_nothing_to_show_says_so() {
        let axes = Axes {
            title: "nothing held",
            x_desc: "x",
            y_desc: "y",
            log_y: true,
        };
        let empty = [Series {
            name: "select".into(),
            points: vec![],
        }];
        for series in [&empty[..], &[]] {
            let svg = lines(axes, series);
            assert!(has_text(&svg, "no level held by any server"), "{svg}");
        }
    }

    #[test]
    fn ticks_and_decades_read_well() {
        assert_eq!(tick(10_000.0), "10,000");
        assert_eq!(tick(0.05), "0.05");
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(decades(3.0, 420.0), (1.0, 1000.0));
        assert_eq!(decades(1000.0, 1000.0), (1000.0, 10_000.0));
        assert_eq!(decades(f64::INFINITY, 0.0), (1.0, 10.0));
    }
}
