//! The stage: progress and the live preview while a job runs, then the image; or a history image the
//! person tapped.

use leptos::either::EitherOf3;
use leptos::prelude::*;

use crate::components::image_card::{ImageCard, ShownImage};
use crate::components::progress::Progress;
use crate::job::Phase;
use crate::studio::{STAGE_ID, Studio};

/// What the stage shows, in order of precedence.
#[derive(Debug, Clone, PartialEq)]
enum Showing {
    Image(ShownImage),
    Preview {
        url: Option<String>,
        width: u32,
        height: u32,
    },
    Nothing,
}

/// The right column (desktop) or the block under the form (phone).
#[component]
pub fn Stage(studio: Studio) -> impl IntoView {
    let ui = studio.ui;
    let showing = Memo::new(move |_| {
        if let Some(item) = studio.selected.get() {
            return Showing::Image(ShownImage::from_history(&item));
        }
        studio.job.with(|job| match job {
            Some(job) => match &job.phase {
                Phase::Completed(image) => Showing::Image(ShownImage::from_job(job, image)),
                phase if !phase.is_terminal() => Showing::Preview {
                    url: job.preview_url.clone(),
                    width: job.width,
                    height: job.height,
                },
                _ => Showing::Nothing,
            },
            None => Showing::Nothing,
        })
    });
    crate::components::erase(view! {
        <section id=STAGE_ID class="stage" aria-label=ui.result>
            <Progress studio/>
            {move || match showing.get() {
                Showing::Image(image) => EitherOf3::A(view! { <ImageCard studio image/> }),
                Showing::Preview { url, width, height } => {
                    let ratio = format!("{width} / {height}");
                    // As wide as the column allows while the height stays within the screen.
                    let fitted_width = format!("min(100%, calc(62svh * {width} / {height}))");
                    EitherOf3::B(view! {
                        <div class="canvas pending" style:aspect-ratio=ratio style:width=fitted_width>
                            {url
                                .map(|url| {
                                    view! {
                                        <img class="preview" src=url alt=ui.live_preview/>
                                    }
                                })}
                        </div>
                    })
                }
                Showing::Nothing => EitherOf3::C(view! {
                    <div class="canvas empty">
                        <p>{ui.image_appears_here}</p>
                    </div>
                }),
            }}
        </section>
    })
}
