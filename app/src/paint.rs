//! "Paint over a part" as plain data: the brush strokes a person painted over the chosen picture, in the
//! picture's own pixels, with undo and clear, and the mask they make (transparent where painted, as
//! OpenAI's edits API and the gateway read a mask).
//!
//! The component only turns pointer positions into picture pixels ([`ScreenRect::to_picture`]), draws
//! what these types hold, and uploads [`MaskPainting::mask_rgba`]. Nothing here needs a browser, so
//! the stroke, undo and raster rules are tested natively.

/// A point in the picture's pixels (0,0 is the top left corner; fractions are allowed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

/// Where the picture is drawn on screen (the canvas element's bounding box, CSS pixels).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScreenRect {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

impl ScreenRect {
    /// The picture pixel under a pointer at (`client_x`, `client_y`), for a picture of `width` x
    /// `height` pixels drawn in this rectangle at any scale. A pointer that slid off the edge while
    /// painting is held at the edge. `None` when the rectangle has no area (not laid out yet).
    pub fn to_picture(&self, client_x: f64, client_y: f64, width: u32, height: u32) -> Option<Point> {
        if self.width <= 0.0 || self.height <= 0.0 {
            return None;
        }
        let x = ((client_x - self.left) / self.width).clamp(0.0, 1.0) * f64::from(width);
        let y = ((client_y - self.top) / self.height).clamp(0.0, 1.0) * f64::from(height);
        Some(Point {
            x: x as f32,
            y: y as f32,
        })
    }
}

/// The brush sizes offered, as a share of the picture's longer side, so a brush covers the same part
/// of the picture whatever its pixel size and however large the screen shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Brush {
    Small,
    #[default]
    Medium,
    Large,
}

impl Brush {
    pub const ALL: [Brush; 3] = [Brush::Small, Brush::Medium, Brush::Large];

    /// The brush's radius in pixels of a picture of `width` x `height`.
    pub fn radius(self, width: u32, height: u32) -> f32 {
        let share = match self {
            Brush::Small => 0.015,
            Brush::Medium => 0.035,
            Brush::Large => 0.07,
        };
        (width.max(height) as f32 * share).max(1.0)
    }
}

/// One movement of the finger or mouse with the button held: a line through its points, as wide as
/// the brush (a single point is a dot).
#[derive(Debug, Clone, PartialEq)]
pub struct Stroke {
    pub radius: f32,
    pub points: Vec<Point>,
}

/// What undo takes back.
#[derive(Debug, Clone, PartialEq)]
enum Edit {
    /// The last stroke was painted.
    Painted,
    /// These strokes were cleared.
    Cleared(Vec<Stroke>),
}

/// The painting over one picture.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskPainting {
    width: u32,
    height: u32,
    strokes: Vec<Stroke>,
    /// True while a stroke is being painted (its points are added to the last stroke).
    painting: bool,
    edits: Vec<Edit>,
    /// Counts every change, so a mask uploaded once is not uploaded again unchanged.
    revision: u64,
    pub brush: Brush,
    /// Whether the painted part is shown over the picture.
    pub shown: bool,
}

impl MaskPainting {
    /// A painting over a picture of `width` x `height` pixels (the upload's answer), nothing painted.
    pub fn new(width: u32, height: u32) -> MaskPainting {
        MaskPainting {
            width,
            height,
            strokes: Vec::new(),
            painting: false,
            edits: Vec::new(),
            revision: 0,
            brush: Brush::default(),
            shown: true,
        }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// The strokes, oldest first.
    pub fn strokes(&self) -> &[Stroke] {
        &self.strokes
    }

    /// Changes with every stroke, undo and clear.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// True when nothing is painted: no mask is sent, the whole picture may change.
    pub fn is_empty(&self) -> bool {
        self.strokes.is_empty()
    }

    pub fn can_undo(&self) -> bool {
        !self.edits.is_empty()
    }

    /// True while a stroke is under way.
    pub fn is_painting(&self) -> bool {
        self.painting
    }

    /// The radius of the brush in picture pixels.
    pub fn brush_radius(&self) -> f32 {
        self.brush.radius(self.width, self.height)
    }

    /// The finger touched or the button went down: a new stroke starts with a dot.
    pub fn begin(&mut self, at: Point) {
        let radius = self.brush_radius();
        self.strokes.push(Stroke {
            radius,
            points: vec![at],
        });
        self.edits.push(Edit::Painted);
        self.painting = true;
        self.revision += 1;
    }

    /// The pointer moved while painting: the stroke goes on to `at`. Returns the segment to draw
    /// (from the stroke's previous point), or `None` when not painting.
    pub fn extend(&mut self, at: Point) -> Option<(Point, Point)> {
        if !self.painting {
            return None;
        }
        let stroke = self.strokes.last_mut()?;
        let from = *stroke.points.last()?;
        if from == at {
            return None;
        }
        stroke.points.push(at);
        self.revision += 1;
        Some((from, at))
    }

    /// The finger lifted or the button went up (or the pointer was lost).
    pub fn end(&mut self) {
        self.painting = false;
    }

    /// Takes back the last stroke, or the last clear. False when there is nothing to undo.
    pub fn undo(&mut self) -> bool {
        self.painting = false;
        match self.edits.pop() {
            Some(Edit::Painted) => {
                self.strokes.pop();
            }
            Some(Edit::Cleared(strokes)) => self.strokes = strokes,
            None => return false,
        }
        self.revision += 1;
        true
    }

    /// Removes every stroke (undo brings them back).
    pub fn clear(&mut self) {
        self.painting = false;
        if self.strokes.is_empty() {
            return;
        }
        let strokes = std::mem::take(&mut self.strokes);
        self.edits.push(Edit::Cleared(strokes));
        self.revision += 1;
    }

    /// The mask's alpha, row by row at the picture's size: 0 (transparent: repaint) where a stroke
    /// covers the pixel's centre, 255 elsewhere.
    pub fn mask_alpha(&self) -> Vec<u8> {
        let (width, height) = (self.width as usize, self.height as usize);
        let mut alpha = vec![255_u8; width * height];
        for stroke in &self.strokes {
            let mut previous = None;
            for &point in &stroke.points {
                cover_segment(
                    &mut alpha,
                    width,
                    height,
                    previous.unwrap_or(point),
                    point,
                    stroke.radius,
                );
                previous = Some(point);
            }
        }
        alpha
    }

    /// The mask as RGBA pixels (black, with [`MaskPainting::mask_alpha`]), as a canvas's `ImageData`
    /// takes them.
    pub fn mask_rgba(&self) -> Vec<u8> {
        self.mask_alpha()
            .into_iter()
            .flat_map(|alpha| [0, 0, 0, alpha])
            .collect()
    }
}

/// Marks transparent every pixel whose centre lies within `radius` of the segment `a`-`b` (a capsule;
/// a dot when `a == b`).
fn cover_segment(alpha: &mut [u8], width: usize, height: usize, a: Point, b: Point, radius: f32) {
    if width == 0 || height == 0 {
        return;
    }
    let bound = |low: f32, high: f32, limit: usize| {
        let first = (low - radius).floor().max(0.0) as usize;
        let last = ((high + radius).ceil().max(0.0) as usize).min(limit - 1);
        (first, last)
    };
    let (x0, x1) = bound(a.x.min(b.x), a.x.max(b.x), width);
    let (y0, y1) = bound(a.y.min(b.y), a.y.max(b.y), height);
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let length_squared = dx * dx + dy * dy;
    let radius_squared = radius * radius;
    for y in y0..=y1 {
        let py = y as f32 + 0.5;
        for x in x0..=x1 {
            let px = x as f32 + 0.5;
            // The nearest point of the segment to the pixel's centre.
            let t = if length_squared > 0.0 {
                (((px - a.x) * dx + (py - a.y) * dy) / length_squared).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let (nx, ny) = (a.x + t * dx - px, a.y + t * dy - py);
            if nx * nx + ny * ny <= radius_squared {
                alpha[y * width + x] = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(x: f32, y: f32) -> Point {
        Point { x, y }
    }

    fn transparent(alpha: &[u8]) -> usize {
        alpha.iter().filter(|&&a| a == 0).count()
    }

    #[test]
    fn a_pointer_maps_to_picture_pixels_at_any_screen_scale_and_is_held_at_the_edges() {
        // A 1024 x 768 picture shown 320 x 240 CSS pixels large, 10 px from the left, 100 from the top.
        let rect = ScreenRect {
            left: 10.0,
            top: 100.0,
            width: 320.0,
            height: 240.0,
        };
        assert_eq!(rect.to_picture(10.0, 100.0, 1024, 768), Some(point(0.0, 0.0)));
        assert_eq!(
            rect.to_picture(170.0, 220.0, 1024, 768),
            Some(point(512.0, 384.0))
        );
        assert_eq!(
            rect.to_picture(330.0, 340.0, 1024, 768),
            Some(point(1024.0, 768.0))
        );
        assert_eq!(rect.to_picture(-50.0, 900.0, 1024, 768), Some(point(0.0, 768.0)));
        let unlaid = ScreenRect { width: 0.0, ..rect };
        assert_eq!(unlaid.to_picture(10.0, 100.0, 1024, 768), None);
    }

    #[test]
    fn brushes_are_a_share_of_the_longer_side() {
        assert_eq!(Brush::Medium.radius(1024, 512), Brush::Medium.radius(512, 1024));
        assert!(Brush::Small.radius(1024, 1024) < Brush::Medium.radius(1024, 1024));
        assert!(Brush::Medium.radius(1024, 1024) < Brush::Large.radius(1024, 1024));
        assert!((Brush::Large.radius(1000, 600) - 70.0).abs() < 1e-3);
        assert_eq!(Brush::Small.radius(10, 10), 1.0, "at least a pixel");
    }

    #[test]
    fn strokes_grow_while_painting_and_undo_takes_back_whole_strokes() {
        let mut painting = MaskPainting::new(100, 100);
        assert!(painting.is_empty() && !painting.can_undo());
        assert_eq!(painting.extend(point(1.0, 1.0)), None, "not painting yet");
        painting.begin(point(10.0, 10.0));
        assert_eq!(
            painting.extend(point(20.0, 10.0)),
            Some((point(10.0, 10.0), point(20.0, 10.0)))
        );
        assert_eq!(painting.extend(point(20.0, 10.0)), None, "no move, no segment");
        painting.end();
        assert_eq!(painting.extend(point(30.0, 10.0)), None, "lifted");
        painting.begin(point(50.0, 50.0));
        painting.end();
        assert_eq!(painting.strokes().len(), 2);
        assert_eq!(painting.strokes()[0].points.len(), 2);

        assert!(painting.undo());
        assert_eq!(painting.strokes().len(), 1);
        assert!(painting.undo());
        assert!(painting.is_empty());
        assert!(!painting.undo());
    }

    #[test]
    fn clear_can_be_undone_and_clearing_nothing_is_no_edit() {
        let mut painting = MaskPainting::new(100, 100);
        painting.clear();
        assert!(!painting.can_undo());
        painting.begin(point(10.0, 10.0));
        painting.end();
        painting.begin(point(60.0, 60.0));
        painting.end();
        let before = painting.mask_alpha();
        painting.clear();
        assert!(painting.is_empty());
        assert_eq!(transparent(&painting.mask_alpha()), 0);
        assert!(painting.undo());
        assert_eq!(painting.strokes().len(), 2);
        assert_eq!(painting.mask_alpha(), before);
    }

    #[test]
    fn every_change_moves_the_revision() {
        let mut painting = MaskPainting::new(64, 64);
        let mut seen = vec![painting.revision()];
        painting.begin(point(1.0, 1.0));
        seen.push(painting.revision());
        painting.extend(point(5.0, 5.0));
        seen.push(painting.revision());
        painting.end();
        painting.clear();
        seen.push(painting.revision());
        painting.undo();
        seen.push(painting.revision());
        let mut unique = seen.clone();
        unique.dedup();
        assert_eq!(unique, seen);
    }

    #[test]
    fn the_mask_is_transparent_exactly_under_the_brush_and_opaque_elsewhere() {
        let mut painting = MaskPainting::new(40, 20);
        painting.brush = Brush::Large; // radius 2.8 px on a 40 px side
        painting.begin(point(10.0, 10.0));
        painting.extend(point(30.0, 10.0));
        painting.end();
        let alpha = painting.mask_alpha();
        assert_eq!(alpha.len(), 40 * 20);
        assert!(alpha.iter().all(|&a| a == 0 || a == 255));
        let at = |x: usize, y: usize| alpha[y * 40 + x];
        // Along the line, its ends' round caps, and not beyond the radius.
        assert_eq!(at(20, 9), 0);
        assert_eq!(at(20, 11), 0);
        assert_eq!(at(8, 9), 0);
        assert_eq!(at(31, 10), 0);
        assert_eq!(at(20, 14), 255);
        assert_eq!(at(5, 10), 255);
        assert_eq!(at(35, 10), 255);
        assert_eq!(at(0, 0), 255);
        // About the capsule's area: 20 x 5.6 plus a circle of radius 2.8.
        let area = transparent(&alpha);
        assert!((120..=150).contains(&area), "{area}");
    }

    #[test]
    fn a_dot_is_a_disc_and_strokes_at_the_border_stay_inside_the_picture() {
        let mut painting = MaskPainting::new(100, 50);
        painting.begin(point(0.0, 0.0));
        painting.end();
        painting.begin(point(100.0, 50.0));
        painting.end();
        let alpha = painting.mask_alpha();
        assert_eq!(alpha.len(), 100 * 50);
        assert_eq!(alpha[0], 0);
        assert_eq!(alpha[100 * 50 - 1], 0);
        // A quarter of a disc of radius 3.5 in each corner.
        let area = transparent(&alpha);
        assert!((14..=24).contains(&area), "{area}");
    }

    #[test]
    fn the_rgba_mask_is_black_with_the_alpha_and_the_pictures_size() {
        let mut painting = MaskPainting::new(8, 4);
        painting.begin(point(0.5, 0.5));
        painting.end();
        let rgba = painting.mask_rgba();
        assert_eq!(rgba.len(), 8 * 4 * 4);
        assert_eq!(&rgba[..4], &[0, 0, 0, 0]);
        assert_eq!(&rgba[rgba.len() - 4..], &[0, 0, 0, 255]);
    }

    #[test]
    fn a_stroke_keeps_the_brush_it_was_painted_with() {
        let mut painting = MaskPainting::new(1000, 1000);
        painting.brush = Brush::Small;
        painting.begin(point(100.0, 100.0));
        painting.end();
        painting.brush = Brush::Large;
        painting.begin(point(500.0, 500.0));
        painting.end();
        assert!((painting.strokes()[0].radius - 15.0).abs() < 1e-3);
        assert!((painting.strokes()[1].radius - 70.0).abs() < 1e-3);
    }
}
