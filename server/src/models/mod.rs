//! Model files: download, verify and list the files of `backend/models.toml`.

use crate::config::ModelsAction;

/// Runs one `zimage models` action.
pub async fn run(action: ModelsAction) -> anyhow::Result<()> {
    anyhow::bail!("`zimage models` is not built yet: {action:?}")
}
