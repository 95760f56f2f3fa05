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
    view! {
        <Title text="Z-Image-Turbo (Local)"/>
        <Router>
            <Routes fallback=NotFound>
                <Route path=path!("/") view=StudioPage/>
            </Routes>
        </Router>
    }
}
