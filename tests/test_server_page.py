"""The chat page of `apls serve` in headless Chromium (Debian's chromium and chromium-driver,
through Selenium): a message sent, the reply streams in, the page shows it and the speed."""

import os
import shutil
import tempfile

import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed (pip install '.[server]')")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

from server_harness import running_server  # noqa: E402

import apls  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CI"):
            pytest.fail(
                "chromium and chromedriver are missing: CI must install them (apt-get install chromium chromium-driver)"
            )
        pytest.skip("chromium/chromedriver not installed (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="apls-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(flag)
    # The browser must not inherit a sanitizer preload meant for this Python process.
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER, env=env))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_chat_page_streams_a_reply(browser, smollm2_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    model = apls.Model(smollm2_path)
    question = "What color is the sky?"
    ref = model.chat([{"role": "user", "content": question}], 16, temperature=0)
    n_ref = model.last_stats.n_generated
    with running_server(model, model_id="smollm2", n_slots=2, n_ctx=256) as s:
        browser.get(s.url + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda d: d.find_element(By.ID, "model").text == "smollm2")
        for field, value in (("temperature", "0"), ("max-tokens", "16")):
            el = browser.find_element(By.ID, field)
            el.clear()
            el.send_keys(value)
        # Count the reply's updates as they land: streamed text arrives in several.
        browser.execute_script(
            "window.updates = 0; new MutationObserver(() => window.updates++)"
            ".observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});"
        )
        browser.find_element(By.ID, "input").send_keys(question)
        browser.find_element(By.ID, "send").click()
        wait.until(
            lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.assistant[data-state=done], .msg.error[data-state=done]")
        )
        reply = browser.find_element(By.CSS_SELECTOR, ".msg[data-state=done]")
        assert "error" not in reply.get_attribute("class"), reply.text
        # textContent: the reply as streamed (Selenium's .text would trim its whitespace).
        assert reply.get_attribute("textContent") == ref
        assert browser.execute_script("return window.updates") > 3
        stats = browser.find_element(By.ID, "stats").text
        assert f"{n_ref} tokens" in stats and "tok/s" in stats, stats
        assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".msg.user")] == [question]
        assert s.wait_idle()["kv_check"] == "ok"
