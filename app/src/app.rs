//! The root component: the studio at `/`, "not found" elsewhere.
//!
//! Two pages need no router: the gateway tells the page which one it is rendering (context, from the
//! request's path), and the browser reads the same from its address, so hydration matches. Leaving
//! `leptos_router` and `leptos_meta` out keeps them out of the browser bundle (see BENCHMARKS.md,
//! "Bundle").

use leptos::either::Either;
use leptos::prelude::*;

use crate::pages::not_found::NotFound;
use crate::pages::studio::StudioPage;

/// The page being shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Studio,
    NotFound,
}

impl Page {
    /// The page at `path`.
    pub fn at(path: &str) -> Page {
        if path == "/" { Page::Studio } else { Page::NotFound }
    }

    /// The document's `<title>`.
    pub fn title(self, ui: &crate::i18n::Ui) -> &'static str {
        match self {
            Page::Studio => ui.title,
            Page::NotFound => ui.not_found_title,
        }
    }
}

/// The page of this request (the gateway provides it and the language before rendering; the browser
/// reads both back from the document).
pub fn use_page() -> Page {
    use_context::<Page>().unwrap_or(Page::Studio)
}

/// The whole UI.
#[component]
pub fn App() -> impl IntoView {
    #[cfg(feature = "hydrate")]
    {
        if use_context::<crate::i18n::Lang>().is_none() {
            provide_context(crate::browser::document_lang());
        }
        if use_context::<Page>().is_none() {
            provide_context(Page::at(&crate::browser::path()));
        }
    }
    match use_page() {
        Page::Studio => Either::Left(view! { <StudioPage/> }),
        Page::NotFound => Either::Right(view! { <NotFound/> }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_root_is_the_studio() {
        assert_eq!(Page::at("/"), Page::Studio);
        assert_eq!(Page::at("/no/such/page"), Page::NotFound);
        assert_eq!(Page::at(""), Page::NotFound);
        assert_eq!(
            Page::NotFound.title(&crate::i18n::ZH_CN),
            crate::i18n::ZH_CN.not_found_title
        );
    }
}
