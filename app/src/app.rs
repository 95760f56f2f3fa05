//! The root component and the route table.

use leptos::prelude::*;
use leptos_meta::{Title, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;

use crate::pages::not_found::NotFound;
use crate::pages::studio::StudioPage;

/// The whole UI: the studio at `/`, "not found" elsewhere.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // The gateway provides the request's language before rendering; the browser reads the one the
    // gateway rendered the document in.
    #[cfg(feature = "hydrate")]
    if use_context::<crate::i18n::Lang>().is_none() {
        provide_context(crate::browser::document_lang());
    }
    let ui = crate::i18n::use_ui();
    view! {
        <Title text=ui.title/>
        <Router>
            <Routes fallback=NotFound>
                <Route path=path!("/") view=StudioPage/>
            </Routes>
        </Router>
    }
}
