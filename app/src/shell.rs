//! The HTML document the gateway renders around the app: meta tags, the manifest, the stylesheet and
//! the scripts that load the hydrate bundle. Everything comes from the gateway itself (`/pkg/`).

use leptos::prelude::*;

use crate::app::App;

/// Where Trunk puts the stylesheet, the manifest and the icons (next to the bundle).
pub const STYLESHEET: &str = "/pkg/main.css";
pub const MANIFEST: &str = "/pkg/manifest.webmanifest";

/// The document for every page; `options` names the bundle `<HydrationScripts>` loads.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let lang = crate::i18n::use_lang();
    let title = crate::app::use_page().title(lang.ui());
    view! {
        <!DOCTYPE html>
        <html lang=lang.tag()>
            <head>
                <meta charset="utf-8"/>
                <title>{title}</title>
                <meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover"/>
                <meta name="color-scheme" content="light dark"/>
                <meta name="theme-color" media="(prefers-color-scheme: light)" content="#f6f5f2"/>
                <meta name="theme-color" media="(prefers-color-scheme: dark)" content="#15161a"/>
                <meta name="description" content=lang.ui().description/>
                <meta name="referrer" content="no-referrer"/>
                <link rel="manifest" href=MANIFEST/>
                <link rel="icon" href="/pkg/icons/icon.svg" type="image/svg+xml"/>
                <link rel="apple-touch-icon" href="/pkg/icons/icon-192.png"/>
                <link rel="stylesheet" href=STYLESHEET/>
                <HydrationScripts options/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}
