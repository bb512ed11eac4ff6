//! Reading the trail. Search and stories arrive with the auditor's issue;
//! verification is here from the start.

use axum::Json;
use axum::extract::State;
use taskgate_audit::Verifier;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::Caller;
use super::views::VerifyView;

/// Verify the whole chain and report the first bad record.
#[utoipa::path(
    get, path = "/v1/audit/verify",
    responses(
        (status = 200, description = "verification report", body = VerifyView),
        (status = 403, description = "not an auditor or admin", body = ErrorBody),
    )
)]
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<VerifyView>, ApiError> {
    if !caller.reads_everything() {
        return Err(ApiError::forbidden(
            "only auditors and admins may verify the whole trail",
        ));
    }
    let report = state
        .read(|r| {
            let mut verifier = Verifier::new();
            r.scan_events(&mut |row| verifier.push(row))?;
            Ok(verifier.finish())
        })
        .await?;
    Ok(Json(VerifyView {
        ok: report.ok(),
        events: report.events,
        chain: report.chain,
        head_seq: report.head_seq,
        head_hash: report.head_hash,
        problem: report.problem.map(|p| p.to_string()),
    }))
}
