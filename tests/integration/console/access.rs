//! Signing in (a refused token, then the right one, by keyboard), a token refused later, and
//! signing out.

use serde_json::json;

use super::is_refused_token;
use crate::support::browser::{Browser, DESKTOP, PHONE, button, button_in, link};
use crate::support::process;

/// A wrong token shows the server's error with its request id and keeps the form; the right
/// one opens the overview and lives in sessionStorage only. The sign-in page is screenshot at
/// both widths first.
pub(super) fn sign_in(browser: &Browser, ui: &str) {
    browser.goto(ui);
    browser.find("form#login");
    for (name, viewport) in [("login", PHONE), ("login", DESKTOP)] {
        browser.set_viewport(viewport);
        browser.assert_no_overflow(name);
        browser.screenshot(name);
    }
    assert_eq!(
        browser.text("form#login label[for='token']").trim(),
        "Admin token"
    );
    assert_eq!(
        browser.attr_now("input#token", "type").as_deref(),
        Some("password")
    );

    browser.fill("input#token", "not-the-admin-token-0123456789");
    browser.click(&button_in("//form[@id='login']", "Sign in"));
    let alert = browser.wait_for_text("[role='alert'].error", &["UNAUTHORIZED", "Request id: "]);
    let request_id = alert
        .split("Request id:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("");
    assert!(
        request_id.len() >= 8,
        "a request id after \"Request id:\" in {alert:?}"
    );
    assert!(
        browser.exists("form#login"),
        "the form stays after a refusal"
    );
    browser.expect_log_errors("a refused token", is_refused_token);

    // By keyboard: Enter in the field submits the form.
    browser.fill("input#token", process::ADMIN);
    browser.press_enter("input#token");
    browser.wait_ready("Overview");
    // Tab moves through the controls from the top of a freshly loaded page (the token stays
    // in the tab), each showing where the focus is.
    browser.goto("about:blank");
    browser.goto(&format!("{ui}#/overview"));
    browser.wait_ready("Overview");
    for _ in 0..4 {
        browser.press_tab();
        let (element, ring) = browser.focus();
        assert!(
            ring && !element.starts_with("body"),
            "after Tab the focus is on a control with a visible indicator: {element} (ring: {ring})"
        );
    }
    let hash = browser.execute("return location.hash", vec![]);
    assert_eq!(hash, json!("#/overview"));
    let stored = browser.execute(
        "return [JSON.stringify(sessionStorage).includes(arguments[0]),
                 JSON.stringify(localStorage).includes(arguments[0]),
                 document.cookie.includes(arguments[0])]",
        vec![json!(process::ADMIN)],
    );
    assert_eq!(
        stored,
        json!([true, false, false]),
        "the token is kept in sessionStorage only"
    );
    browser.assert_log_clean("sign-in");
}

/// A token the server refuses on a later call (changed or expired behind the tab's back) returns
/// to the form with the error and forgets it; signing in again goes on.
pub(super) fn an_expired_token_returns_to_the_login(browser: &Browser) {
    let stale = "expired-admin-token-0123456789abcdef";
    let replaced = browser.execute(
        "let replaced = 0;
         for (let i = 0; i < sessionStorage.length; i++) {
           const key = sessionStorage.key(i), value = sessionStorage.getItem(key);
           if (value.includes(arguments[0])) {
             sessionStorage.setItem(key, value.split(arguments[0]).join(arguments[1]));
             replaced++;
           }
         }
         return replaced;",
        vec![json!(process::ADMIN), json!(stale)],
    );
    assert_eq!(replaced, json!(1), "the token in sessionStorage");
    browser.click(&link("Breakers"));
    browser.find("form#login");
    let alert = browser.wait_for_text("[role='alert'].error", &["UNAUTHORIZED", "Request id: "]);
    assert!(
        alert.to_lowercase().contains("token refused or expired"),
        "the error says why: {alert:?}"
    );
    let kept = browser.execute(
        "return JSON.stringify(sessionStorage).includes(arguments[0])",
        vec![json!(stale)],
    );
    assert_eq!(kept, json!(false), "the refused token is forgotten");
    browser.expect_log_errors("an expired token", is_refused_token);

    // Back where it was, or on the overview: either is fine.
    browser.fill("input#token", process::ADMIN);
    browser.press_enter("input#token");
    browser.wait_until("a page ready after signing in again", |b| {
        !b.exists("form#login") && b.exists("main#page[data-ready='true'] h1")
    });
    browser.assert_log_clean("signed in again");
}

/// Signing out returns to the form and forgets the token.
pub(super) fn sign_out(browser: &Browser) {
    browser.click(&button("Sign out"));
    browser.find("form#login");
    let kept = browser.execute(
        "return JSON.stringify(sessionStorage).includes(arguments[0])",
        vec![json!(process::ADMIN)],
    );
    assert_eq!(kept, json!(false), "the token is forgotten at sign-out");
}
