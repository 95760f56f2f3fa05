//! The state every request handler shares: handles to the jobs, the history, the images and the
//! latest readiness. Built once in [`crate::serve`]; cloning is cheap.

use tokio::sync::watch;
use zimage_contract::Readiness;

use crate::access::Access;
use crate::history::History;
use crate::images::ImageStore;
use crate::jobs::Jobs;
use crate::pictures::PictureStore;
use crate::styles::Styles;

/// Shared handles for the HTTP layer.
#[derive(Clone)]
pub struct AppState {
    /// The door: who may come in, and the abuse limits.
    pub access: Access,
    pub jobs: Jobs,
    pub history: History,
    /// The saved styles (in the history's database).
    pub styles: Styles,
    pub images: ImageStore,
    /// The pictures and masks jobs start from.
    pub pictures: PictureStore,
    pub readiness: watch::Receiver<Readiness>,
    /// The longest a job may hold ComfyUI (`--job-deadline`): it bounds how long a request that waits
    /// for its images (`/v1/images/generations`) waits without a word from them.
    pub job_deadline: std::time::Duration,
    /// The trigger words of the backends' LoRA files, as their probers read them.
    pub lora_triggers: crate::readiness::TriggerWords,
}
