//! `graygate_alias_weight_percent`, read from the routing table in force at scrape time.
//! It lives beside the store because the store owns that table.
//!
//! The configured split is a property of the published table, so the gauge is derived
//! from it when Prometheus asks rather than kept as 20,000 gauge children that every
//! reload rewrites: nothing to refresh on a reload, nothing resident between scrapes, and
//! a scrape can never show weights of a table that is not (or not yet) the live one.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::routing::RoutingTable;

const NAME: &str = "graygate_alias_weight_percent";
const HELP: &str = "Configured share of an alias's traffic per version, in percent";

pub struct AliasWeights {
    desc: Desc,
    table: Arc<ArcSwap<RoutingTable>>,
}

// === impl AliasWeights ===

impl AliasWeights {
    pub fn new(table: Arc<ArcSwap<RoutingTable>>) -> Result<Self, prometheus::Error> {
        let labels = ["function", "alias", "version"].map(String::from).to_vec();
        let desc = Desc::new(NAME.into(), HELP.into(), labels, HashMap::new())?;
        Ok(AliasWeights { desc, table })
    }
}

impl Collector for AliasWeights {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let table = self.table.load();
        let mut metrics = Vec::new();
        for function in &table.source().spec().functions {
            for alias in &function.aliases {
                let extra: i64 = alias.additional_version_weights.values().sum();
                let own = (alias.version.as_str(), 100 - extra);
                let additional = alias.additional_version_weights.iter().map(|(v, w)| (v.as_str(), *w));
                for (version, weight) in std::iter::once(own).chain(additional) {
                    // Label pairs sorted by name, as the exposition format expects.
                    let labels = [("alias", &*alias.name), ("function", &*function.name), ("version", version)];
                    metrics.push(gauge(labels, weight));
                }
            }
        }
        let mut family = MetricFamily::default();
        family.set_name(NAME.into());
        family.set_help(HELP.into());
        family.set_field_type(MetricType::GAUGE);
        family.set_metric(metrics);
        vec![family]
    }
}

fn gauge(labels: [(&str, &str); 3], value: i64) -> Metric {
    let mut metric = Metric::default();
    metric.set_label(
        labels
            .into_iter()
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name(name.into());
                pair.set_value(value.into());
                pair
            })
            .collect(),
    );
    let mut gauge = Gauge::default();
    gauge.set_value(value as f64);
    metric.set_gauge(gauge);
    metric
}
