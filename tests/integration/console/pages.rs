//! The read-only pages, and every page at both widths: ready, no horizontal overflow, WCAG AA
//! contrast, a screenshot.

use super::events::Published;
use super::{PAGES, admin, ok};
use crate::support::browser::{Browser, DESKTOP, PHONE, button, link};
use crate::support::process::{self, ServerProcess};

/// Event types, nodes and reactors, and the overview show what the server holds.
pub(super) fn read_only_pages(browser: &Browser, server: &ServerProcess) {
    browser.click(&link("Event types"));
    browser.wait_ready("Event types");
    let declared = "#types-list article[data-type='PAYMENT_RECEIVED']";
    browser.wait_for_text(declared, &["minor units", "amount", "o-1"]);

    browser.click(&link("Nodes and reactors"));
    browser.wait_ready("Nodes and reactors");
    browser.wait_for_text(
        "#nodes-table",
        &["flowpay", "PAYMENT_*", "factory", "MINT_*"],
    );
    browser.wait_for_text("#reactors-table", &["refund-notice", "PAYMENT_REFUNDED"]);
    let page = browser.execute("return document.body.innerText", vec![]);
    assert!(
        !page.as_str().unwrap_or("").contains(process::SECRET),
        "a node's secret on the nodes page"
    );

    browser.click(&link("Overview"));
    browser.wait_ready("Overview");
    let stats = ok(admin(server, "GET", "/api/retry/stats").send());
    browser.wait_for_text("#overview-queue", &[&stats["deadLetters"].to_string()]);
    for part in [
        "#overview-health",
        "#overview-breakers",
        "#overview-instances",
    ] {
        browser.find(part);
    }
    browser.wait_until("three sparklines", |b| b.find_all("svg.spark").len() >= 3);
    browser.assert_log_clean("read-only pages");
}

/// Every page at 1280 and 390 px: ready, no horizontal overflow, a screenshot.
pub(super) fn every_page_at_both_widths(browser: &Browser, ui: &str, published: &Published) {
    let event = format!("#/events/{}", published.paid.0);
    let mut pages: Vec<(&str, &str, &str)> = PAGES.to_vec();
    pages.push(("event", event.as_str(), ""));
    for viewport in [DESKTOP, PHONE] {
        browser.set_viewport(viewport);
        for (name, route, heading) in &pages {
            browser.goto(&format!("{ui}{route}"));
            if heading.is_empty() {
                browser.find("#deliveries article.delivery");
            } else {
                browser.wait_ready(heading);
            }
            browser.assert_no_overflow(name);
            browser.assert_contrast(name);
            // From the top (a route change keeps the scroll of the page before).
            browser.execute("window.scrollTo(0, 0)", vec![]);
            browser.screenshot(name);
        }
        // The subscription form open, too.
        browser.goto(&format!("{ui}#/subscriptions"));
        browser.wait_ready("Subscriptions");
        browser.click(&button("New subscription"));
        browser.find("form#sub-form");
        browser.assert_no_overflow("subscription-form");
        browser.assert_contrast("subscription-form");
        browser.screenshot("subscription-form");
    }
    browser.set_viewport(DESKTOP);
    browser.assert_log_clean("every page at both widths");
}
