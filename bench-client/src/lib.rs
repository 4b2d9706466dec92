//! archbench's load generator and suite runner.
//!
//! - [`engine`]: the load engines (epoll by default, tokio for comparison) and [`LoadSpec`];
//! - [`response`]: sans-IO response validation;
//! - [`target`]: URL or `host:port` targets, read as curl reads them;
//! - [`request`]: what each request sends, which statuses are answers, the status tally;
//! - [`output`]: the result row schema, atomic CSV/JSON writes, the human summary;
//! - [`figures`]: what `load` shows beyond the row (spectrum, histogram, statuses, JSON);
//! - [`meta`]: machine description and timestamps;
//! - [`load`]: one load run from start to [`load::LoadResult`];
//! - [`timeline`]: the per-second figures of a run;
//! - [`stats`]: medians, bootstrap intervals, and when a difference may be claimed;
//! - [`suite`]: the suite runner (`paper`, `suite --preset`), its reports and plots;
//! - [`regress`]: the CI regression gate (`compare`);
//! - [`html`]: every preset's report on one static page (`bench-client html`, `make report`);
//! - [`udp`]: `load --udp`, the raw protocol over datagrams, loss counted as loss.
#![deny(missing_docs)]

pub mod engine;
pub mod figures;
pub mod html;
pub mod lecture;
pub mod load;
pub mod meta;
pub mod output;
pub mod regress;
pub mod request;
pub mod response;
pub mod stats;
pub mod suite;
pub mod target;
pub mod timeline;
pub mod udp;

pub use engine::{ErrorCounts, LoadSpec};
