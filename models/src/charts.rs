//! The evaluation report's images, drawn with plotters into memory and
//! written as PNG atomically. Text uses DejaVu Sans compiled into the
//! binary, so charts look the same on every machine and need no system
//! font library.

use crate::bootstrap::Interval;
use crate::scoring::Calibration;
use epiflow_operators::split::Recipe;
use epiflow_pipelines::output::write_atomically;
use image::codecs::png::PngEncoder;
use image::{ColorType, ImageEncoder};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::io;
use std::path::Path;
use std::sync::Once;

/// The font family every chart names.
const FONT: &str = "sans-serif";
/// Realistic and oracle bars.
const SET_COLOURS: [RGBColor; 2] = [RGBColor(31, 119, 180), RGBColor(255, 127, 14)];

/// One bar group of the macro-F1 chart: an architecture and, per channel
/// set (realistic, oracle), its macro F1 and interval when it was scored.
pub struct Bars<'a> {
    /// The architecture under the group.
    pub label: &'a str,
    /// Realistic then oracle: macro F1 and its interval, when scored.
    pub sets: [Option<(f64, Option<Interval>)>; 2],
}

/// One model of the generalization chart: per split recipe (in
/// [`Recipe::ALL`] order), its validation macro F1, test macro F1 and the
/// test interval.
pub struct GapBars<'a> {
    /// The model under the group.
    pub label: &'a str,
    /// Per recipe, when the model was scored on it.
    pub recipes: [Option<GapBar>; 3],
}

/// Validation macro F1, test macro F1 and the test interval.
pub type GapBar = (f64, f64, Option<Interval>);

/// Bars of the three recipes.
const RECIPE_COLOURS: [RGBColor; 3] = [RGBColor(31, 119, 180), RGBColor(44, 160, 44), RGBColor(214, 39, 40)];

/// A confusion matrix to draw: rows are the truth, columns the prediction.
pub struct Matrix<'a> {
    /// Above the matrix.
    pub title: &'a str,
    /// The phases, in row and column order.
    pub labels: &'a [String],
    /// `counts[truth][predicted]`.
    pub counts: &'a [Vec<u64>],
}

/// Draws test macro F1 per architecture, realistic and oracle side by side,
/// each bar with its interval, into `path`.
pub fn macro_f1(path: &Path, title: &str, groups: &[Bars]) -> io::Result<()> {
    let (width, height) = (120 + 110 * groups.len().max(1) as u32, 420);
    png(path, (width, height), |root| {
        let mut chart = f1_axes(root, title, 20, groups.len(), 36)?;
        for (set, (name, colour)) in ["realistic", "oracle"].into_iter().zip(SET_COLOURS).enumerate() {
            let x0 = |i: usize| i as f64 + 0.12 + 0.38 * set as f64;
            let bars = groups.iter().enumerate().filter_map(|(i, g)| g.sets[set].map(|(f1, _)| (i, f1)));
            chart
                .draw_series(bars.map(|(i, f1)| Rectangle::new([(x0(i), 0.0), (x0(i) + 0.36, f1)], colour.filled())))
                .map_err(draw_error)?
                .label(name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
            let whiskers = groups.iter().enumerate().filter_map(|(i, g)| Some((i, g.sets[set]?.1?)));
            chart
                .draw_series(whiskers.map(|(i, ci)| {
                    let x = x0(i) + 0.18;
                    PathElement::new(vec![(x, ci.low), (x, ci.high)], BLACK.stroke_width(2))
                }))
                .map_err(draw_error)?;
        }
        legend(&mut chart)?;
        for (i, group) in groups.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            let style = TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
            root.draw_text(group.label, &style, (x, y + 8)).map_err(draw_error)?;
        }
        Ok(())
    })
}

/// Draws a confusion matrix as a grid shaded by each row's share (recall),
/// with the counts written in, into `path`.
pub fn confusion(path: &Path, matrix: &Matrix) -> io::Result<()> {
    let k = matrix.labels.len().max(1);
    let cell = 90u32;
    let (width, height) = (170 + cell * k as u32, 130 + cell * k as u32);
    png(path, (width, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(matrix.title, (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(110)
            .build_cartesian_2d(0f64..k as f64, 0f64..k as f64)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_labels(0)
            .x_desc("predicted")
            .y_desc("truth")
            .axis_desc_style((FONT, 14))
            .draw()
            .map_err(draw_error)?;
        // Row r of the matrix is drawn from the top.
        let top = |r: usize| (k - r) as f64;
        for (r, row) in matrix.counts.iter().enumerate() {
            let total = row.iter().sum::<u64>().max(1) as f64;
            for (c, &n) in row.iter().enumerate() {
                let share = n as f64 / total;
                let shade =
                    RGBColor(255 - (share * 200.0) as u8, 255 - (share * 140.0) as u8, 255 - (share * 40.0) as u8);
                let corners = [(c as f64, top(r) - 1.0), (c as f64 + 1.0, top(r))];
                chart.draw_series([Rectangle::new(corners, shade.filled())]).map_err(draw_error)?;
                chart.draw_series([Rectangle::new(corners, BLACK.mix(0.3))]).map_err(draw_error)?;
                let ink = if share > 0.6 { WHITE } else { BLACK };
                let (x, y) = chart.backend_coord(&(c as f64 + 0.5, top(r) - 0.5));
                let style =
                    TextStyle::from((FONT, 16).into_font()).color(&ink).pos(Pos::new(HPos::Center, VPos::Center));
                root.draw_text(&n.to_string(), &style, (x, y)).map_err(draw_error)?;
            }
        }
        for (i, label) in matrix.labels.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            let below = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
            root.draw_text(label, &below, (x, y + 6)).map_err(draw_error)?;
            let (x, y) = chart.backend_coord(&(0.0, top(i) - 0.5));
            let left = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
            root.draw_text(label, &left, (x - 6, y)).map_err(draw_error)?;
        }
        Ok(())
    })
}

/// Draws, per model, each recipe's test macro F1 as a bar with its interval
/// and the validation macro F1 as a black tick above or inside it: the
/// distance from tick to bar top is the generalization gap.
pub fn generalization(path: &Path, title: &str, models: &[GapBars]) -> io::Result<()> {
    let (width, height) = (140 + 90 * models.len().max(1) as u32, 480);
    png(path, (width, height), |root| {
        let mut chart = f1_axes(root, title, 18, models.len(), 90)?;
        for (r, (recipe, colour)) in Recipe::ALL.into_iter().zip(RECIPE_COLOURS).enumerate() {
            let x0 = |i: usize| i as f64 + 0.08 + 0.28 * r as f64;
            let cells: Vec<(usize, GapBar)> =
                models.iter().enumerate().filter_map(|(i, m)| Some((i, m.recipes[r]?))).collect();
            chart
                .draw_series(cells.iter().map(|&(i, (_, test, _))| {
                    Rectangle::new([(x0(i), 0.0), (x0(i) + 0.26, test)], colour.mix(0.85).filled())
                }))
                .map_err(draw_error)?
                .label(format!("{recipe} test"))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
            let whiskers = cells.iter().filter_map(|&(i, (_, _, ci))| Some((i, ci?)));
            chart
                .draw_series(whiskers.map(|(i, ci)| {
                    let x = x0(i) + 0.13;
                    PathElement::new(vec![(x, ci.low), (x, ci.high)], BLACK.mix(0.6).stroke_width(2))
                }))
                .map_err(draw_error)?;
            chart
                .draw_series(cells.iter().map(|&(i, (val, _, _))| {
                    PathElement::new(vec![(x0(i), val), (x0(i) + 0.26, val)], BLACK.stroke_width(3))
                }))
                .map_err(draw_error)?;
        }
        legend(&mut chart)?;
        for (i, model) in models.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            let style = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
            for (line, part) in model.label.splitn(2, '-').enumerate() {
                root.draw_text(part, &style, (x, y + 8 + 16 * line as i32)).map_err(draw_error)?;
            }
        }
        Ok(())
    })
}

/// Draws a reliability chart into `path`: per confidence bin, the share of
/// its windows predicted right (bars) against the diagonal a calibrated
/// model would follow, with each bin's mean confidence marked on it.
pub fn reliability(path: &Path, title: &str, calibration: &Calibration) -> io::Result<()> {
    png(path, (560, 500), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 16))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..1.0, 0f64..1.0)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc("confidence (top probability)")
            .y_desc("accuracy")
            .x_label_formatter(&|x| format!("{x:.1}"))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()
            .map_err(draw_error)?;
        let bars = calibration.bins.iter().map(|b| {
            Rectangle::new([(b.low + 0.005, 0.0), (b.high - 0.005, b.accuracy)], SET_COLOURS[0].mix(0.8).filled())
        });
        chart.draw_series(bars).map_err(draw_error)?;
        let diagonal = PathElement::new(vec![(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.5).stroke_width(2));
        chart.draw_series([diagonal]).map_err(draw_error)?;
        let marks =
            calibration.bins.iter().map(|b| Circle::new((b.confidence, b.confidence), 4, SET_COLOURS[1].filled()));
        chart.draw_series(marks).map_err(draw_error)?;
        Ok(())
    })
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// A chart of macro F1.
type F1Chart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Axes for `groups` bar groups side by side over macro F1 from 0 to 1, the
/// groups labelled by the caller in `label_area` pixels below.
fn f1_axes<'a, 'b>(
    root: &'a Area<'b>,
    title: &str,
    title_size: u32,
    groups: usize,
    label_area: u32,
) -> io::Result<F1Chart<'a, 'b>> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, title_size))
        .margin(16)
        .x_label_area_size(label_area)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..groups.max(1) as f64, 0f64..1.0)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("macro F1")
        .y_label_formatter(&|y| format!("{y:.1}"))
        .label_style((FONT, 13))
        .draw()
        .map_err(draw_error)?;
    Ok(chart)
}

/// The series' legend, in the lower right corner.
fn legend<'a, 'b: 'a>(chart: &mut F1Chart<'a, 'b>) -> io::Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()
        .map_err(draw_error)
}

/// Renders `draw` on a white `size` canvas in memory and writes it to
/// `path` as a PNG, atomically.
fn png(path: &Path, size: (u32, u32), draw: impl FnOnce(&Area) -> io::Result<()>) -> io::Result<()> {
    static FONTS: Once = Once::new();
    FONTS.call_once(|| {
        // DejaVu Sans is a valid font; should it ever fail to parse, text is
        // left out of the charts rather than stopping the report.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
    let mut pixels = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        draw(&root)?;
        root.present().map_err(draw_error)?;
    }
    write_atomically(path, |w| {
        PngEncoder::new(w).write_image(&pixels, size.0, size.1, ColorType::Rgb8).map_err(io::Error::other)
    })
}

fn draw_error<E: std::error::Error + Send + Sync + 'static>(e: DrawingAreaErrorKind<E>) -> io::Error {
    io::Error::other(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(path: &Path) -> image::RgbImage {
        image::load_from_memory_with_format(&std::fs::read(path).unwrap(), image::ImageFormat::Png).unwrap().to_rgb8()
    }

    #[test]
    fn the_charts_are_pngs_with_bars_and_shaded_cells() {
        let dir = tempfile::tempdir().unwrap();
        let bars_png = dir.path().join("macro_f1.png");
        let ci = Some(Interval { low: 0.7, high: 0.9 });
        let groups = [
            Bars { label: "gbt", sets: [Some((0.8, ci)), Some((0.95, None))] },
            Bars { label: "mlp", sets: [None, Some((0.5, ci))] },
        ];
        macro_f1(&bars_png, "host split", &groups).unwrap();
        let img = decoded(&bars_png);
        let has = |c: RGBColor| img.pixels().any(|p| p.0 == [c.0, c.1, c.2]);
        assert!(has(SET_COLOURS[0]) && has(SET_COLOURS[1]), "both sets' bars are drawn");

        let matrix_png = dir.path().join("confusion.png");
        let labels = vec!["clean".to_string(), "exec".to_string()];
        let counts = vec![vec![10, 0], vec![3, 7]];
        confusion(&matrix_png, &Matrix { title: "gbt-realistic", labels: &labels, counts: &counts }).unwrap();
        let img = decoded(&matrix_png);
        assert_eq!(img.dimensions(), (170 + 180, 130 + 180));
        let darkest = RGBColor(55, 115, 215);
        assert!(
            img.pixels().any(|p| p.0 == [darkest.0, darkest.1, darkest.2]),
            "a full row share is the darkest shade"
        );

        let calibration = Calibration {
            ece: 0.1,
            bins: vec![crate::scoring::CalibrationBin {
                low: 0.8,
                high: 0.9,
                windows: 5,
                confidence: 0.85,
                accuracy: 0.6,
            }],
        };
        let gap_png = dir.path().join("generalization.png");
        let cell = Some((0.95, 0.7, Some(Interval { low: 0.6, high: 0.8 })));
        generalization(&gap_png, "gap", &[GapBars { label: "gbt-realistic", recipes: [cell, None, cell] }]).unwrap();
        let img = decoded(&gap_png);
        assert_eq!(img.dimensions(), (140 + 90, 480), "one model group");
        let coloured = |p: &&image::Rgb<u8>| p.0[0] != p.0[1] || p.0[1] != p.0[2];
        assert!(img.pixels().filter(coloured).count() > 1000, "the recipes' bars are drawn");
        let reliability_png = dir.path().join("reliability.png");
        reliability(&reliability_png, "gbt-realistic", &calibration).unwrap();
        let img = decoded(&reliability_png);
        assert!(img.pixels().any(|p| p.0 == [SET_COLOURS[1].0, SET_COLOURS[1].1, SET_COLOURS[1].2]), "bins marked");
    }
}
