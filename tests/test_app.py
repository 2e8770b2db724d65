"""The web app (`icpt serve`, icpt/app.py): its handlers, and the page driven in a real headless Chromium.

The browser test needs Debian's `chromium` and `chromium-driver` (installed by scripts/bootstrap.sh when run as
root) and selenium; it starts the app on 127.0.0.1 on a free port, and the browser may reach nothing else. Its
screenshots go to the test's own `tmp_path`; with `ICPT_UPDATE_SCREENSHOT=1` the first one is also written to
docs/app_screenshot.png (the README's picture).
"""

import os
import re
import shutil
import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_icpt import ConceptBank, ICPTInputError

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "docs" / "app_screenshot.png"


def test_attention_picture_lights_the_patches_read():
    from PIL import Image

    from icpt.app import attention_picture

    photo = Image.new("RGB", (80, 64), (200, 200, 200))
    read = torch.zeros(4)
    read[0] = 1.0  # a 2 x 2 grid: only the top-left patch is read
    picture = np.asarray(attention_picture([photo, photo], [read, torch.ones(3)], cell=40, center_crop=True))
    lit = picture[40 + 16:, 8:48]  # the first photo's lit copy
    assert lit[5, 5].mean() > 150 and lit[30, 30].mean() < 60  # bright where read, dark elsewhere
    assert (picture[40 + 16:, 56:96] == 255).all()  # 3 patches are no square grid: no lit copy


# ---------------------------------------------------------------- the app's handlers, without a browser


@pytest.fixture(scope="module")
def app():
    pytest.importorskip("gradio")
    from icpt.app import ConceptApp

    return ConceptApp.from_pretrained(max_new_tokens=6)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three photos of a held-out identity of the default backbone's world (never seen in training), a new photo
    with it beside another identity, and a text file named like a photo."""
    from icpt.inference import DEFAULT_BACKBONE
    from icpt.world.world import world_for

    world = world_for(DEFAULT_BACKBONE)
    rng = np.random.default_rng(0)
    held_out, environments = world.split("held_out"), world.environment_set("A")
    folder = tmp_path_factory.mktemp("photos")
    paths = {}
    for i in range(3):
        paths[f"bo{i}"] = folder / f"bo_{i}.png"
        world.render([held_out[0]], environments[i], rng)[0].save(paths[f"bo{i}"])
    paths["query"] = folder / "query.png"
    world.render([held_out[0], held_out[1]], environments[3], rng)[0].save(paths["query"])
    paths["bad"] = folder / "notes.png"
    paths["bad"].write_text("this is not a photo")
    return paths


def references(photos):
    return [str(photos[f"bo{i}"]) for i in range(3)]


def test_app_adds_asks_saves_and_loads(app, photos, tmp_path):
    from icpt.app import Session

    from processing_icpt import load_image

    session, status = app.add_concept(Session(), references(photos), "bo")
    assert session.bank.labels == ["<bo>"] and status.startswith("Added <bo>: 3 photo(s)")
    assert "| `<bo>` | 3 |" in app.concept_table(session)
    picture = app.concept_pictures(session)  # the photos over the patches the rows read: 3 photos side by side
    assert picture.width > 3 * 160 and picture.height > 2 * 160

    _, reply, prompt, used = app.ask(session, load_image(photos["query"]), "Is <bo> in this photo?")
    assert reply  # the greedy answer of the default model
    assert f"| `<bo>` | {session.bank.lengths['<bo>']} |" in used and prompt.size[0] > 0
    _, _, _, used = app.ask(session, load_image(photos["query"]), "What is in this photo?")
    assert used.startswith("No concept entered the prompt")

    _, path = app.save_bank(session)
    loaded, status = app.load_bank(Session(), path)
    assert loaded.bank.labels == ["<bo>"] and "from a bank file" in app.concept_table(loaded)
    assert app.concept_pictures(loaded) is None  # a bank holds vectors, never photos
    with pytest.raises(ICPTInputError, match="already concepts here"):
        app.load_bank(session, path)


def test_example_photos_are_a_new_identity_with_a_free_name(app):
    from icpt.app import Session

    status, paths, label, query, question = app.example(Session())
    assert label == "<bo>" and len(paths) == 3 and question == "Is <bo> in this photo?"
    assert status.startswith("Example: three photos of")
    session, _ = app.add_concept(Session(), paths, label)
    assert app.example(session)[2] == "<kiki>"  # the next free name
    assert app.ask(session, query, question)[0].startswith("Answered (1 concept(s)")


@pytest.mark.parametrize("files, name, message", [
    (None, "kiki", "zero reference images"),
    ("bad", "kiki", "not a readable image"),
    ("missing", "kiki", "does not exist"),
    ("good", "my dog", "Invalid concept label"),
    ("good", "<bo>", "already a concept"),
    ("good", " ", "Give the concept a name"),
])
def test_bad_input_is_the_librarys_error(app, photos, tmp_path, files, name, message):
    from icpt.app import Session

    session, _ = app.add_concept(Session(), references(photos), "bo")
    files = {None: None, "bad": [str(photos["bad"])], "missing": [str(tmp_path / "gone.png")],
             "good": references(photos)}[files]
    with pytest.raises(ICPTInputError, match=message):
        app.add_concept(session, files, name)


def test_bad_input_becomes_a_status_and_changes_nothing(app, photos):
    from icpt.app import Session, shown_errors

    session, _ = app.add_concept(Session(), references(photos), "bo")
    status, *rest = shown_errors(outputs=2)(app.add_concept)(session, [str(photos["bad"])], "kiki")
    assert status.startswith('<span class="error-text">Error: ') and "not a readable image" in status
    assert [r.get("__type__") for r in rest] == ["update"]  # gr.skip(): the session stays as it was
    with pytest.raises(ICPTInputError, match="not a readable concept bank"):
        app.load_bank(session, str(photos["bad"]))
    with pytest.raises(ICPTInputError, match="bank is empty"):
        app.save_bank(Session())


def test_sessions_share_one_model_across_threads(app, photos):
    """Two sessions with different concepts, asked at once from several threads, answer as they do one by one."""
    from icpt.app import Session

    from processing_icpt import load_image

    first, _ = app.add_concept(Session(), references(photos), "bo")
    second, _ = app.add_concept(Session(), references(photos)[:1], "kiki")
    query = load_image(photos["query"])
    jobs = [(first, "Is <bo> in this photo?"), (second, "Is <kiki> in this photo?")] * 4
    alone = [app.ask(session, query, question)[1:4:2] for session, question in jobs[:2]] * 4
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda job: app.ask(job[0], query, job[1])[1:4:2], jobs))
    assert together == alone
    assert second.bank.labels == ["<kiki>"] and first.bank.labels == ["<bo>"]


# ---------------------------------------------------------------- the page in a real browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def loopback_only():
    """While the app runs in this process, a connection to anywhere but this machine fails, and the test too."""
    attempts, connect = [], socket.socket.connect

    def guarded(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(address)
            raise OSError(f"test_app: no network, refused a connection to {address}")
        return connect(sock, address)

    socket.socket.connect = guarded
    yield attempts
    socket.socket.connect = connect
    assert attempts == [], f"the app tried to reach the network: {attempts}"


@pytest.fixture(scope="module")
def server(app, loopback_only):
    from icpt.app import CSS

    port = free_port()
    page = app.build()
    page.launch(server_name="127.0.0.1", server_port=port, share=False, prevent_thread_lock=True, quiet=True, css=CSS)
    yield f"http://127.0.0.1:{port}/"
    page.close()


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/bootstrap.sh installs them as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1700", "--no-proxy-server",
                     # nothing but the app: every other host name fails to resolve
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(argument)
    # an explicit driver: selenium's own driver manager (which downloads) never runs
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=chromedriver))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_for(driver, condition, what, timeout=30.0):
    """Poll `condition(driver)` until it is truthy; fail with `what` and the page's status line if it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition(driver)
        except Exception:  # an element not there yet, or replaced while read
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"Timed out waiting for {what}; status line: {text_of(driver, 'icpt-status')!r}")


def text_of(driver, elem_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, elem_id).text


def element(driver, css: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def upload(driver, elem_id: str, paths):
    element(driver, f"#{elem_id} input[type=file]").send_keys("\n".join(str(p) for p in paths))


def has_file(driver, elem_id: str, name: str) -> bool:
    """Whether the file component `elem_id` lists an uploaded file called `name`."""
    return bool(driver.find_elements("css selector", f'#{elem_id} td.filename[aria-label="{name}"]'))


def type_into(driver, elem_id: str, text: str):
    box = element(driver, f"#{elem_id} textarea, #{elem_id} input")
    box.clear()
    box.send_keys(text)


def open_app(driver, url):
    driver.get(url)
    wait_for(driver, lambda d: element(d, "#icpt-add").is_displayed(), "the app to load")


def test_browser_adds_a_concept_asks_and_shows_errors(app, photos, server, browser, tmp_path):
    from icpt.app import Session

    from processing_icpt import load_image

    started = time.monotonic()
    open_app(browser, server)
    assert "No concepts yet" in text_of(browser, "icpt-concepts")

    # add <bo> from three photos
    upload(browser, "icpt-photos", references(photos))
    wait_for(browser, lambda d: has_file(d, "icpt-photos", "bo_2.png"), "the photos to upload")
    type_into(browser, "icpt-name", "<bo>")
    element(browser, "#icpt-add").click()
    wait_for(browser, lambda d: "Added <bo>" in text_of(d, "icpt-status"), "the concept to be added")
    assert "<bo>" in text_of(browser, "icpt-concepts")
    wait_for(browser, lambda d: d.find_elements("css selector", "#icpt-pictures img"), "the concept's picture")

    # ask about a new photo; the answer is the model's own, as in Python
    upload(browser, "icpt-image", [photos["query"]])
    wait_for(browser, lambda d: d.find_elements("css selector", "#icpt-image img"), "the photo to upload")
    type_into(browser, "icpt-question", "Is <bo> in this photo?")
    element(browser, "#icpt-ask").click()
    wait_for(browser, lambda d: text_of(d, "icpt-status").startswith("Answered"), "the answer")
    shown = element(browser, "#icpt-answer textarea").get_attribute("value")
    session, _ = app.add_concept(Session(), references(photos), "bo")
    assert shown == app.ask(session, load_image(photos["query"]), "Is <bo> in this photo?")[1]
    assert "<bo>" in text_of(browser, "icpt-prompt")
    wait_for(browser, lambda d: d.find_elements("css selector", "#icpt-prompt-picture img"), "the prompt picture")
    browser.save_screenshot(str(tmp_path / "app.png"))
    if os.environ.get("ICPT_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(tmp_path / "app.png", SCREENSHOT)

    # a text file named like a photo: the library's error, in the page; nothing else changes
    upload(browser, "icpt-photos", [photos["bad"]])
    wait_for(browser, lambda d: has_file(d, "icpt-photos", "notes.png"), "the bad file to upload")
    type_into(browser, "icpt-name", "kiki")
    element(browser, "#icpt-add").click()
    wait_for(browser, lambda d: "Error:" in text_of(d, "icpt-status"), "the error")
    error = text_of(browser, "icpt-status")
    assert "notes.png" in error and "not a readable image" in error and not re.search(r"/\S*notes\.png", error)  # no server folder
    assert "<kiki>" not in text_of(browser, "icpt-concepts")
    browser.save_screenshot(str(tmp_path / "app_error.png"))

    # the app keeps running: the same question again
    element(browser, "#icpt-ask").click()
    wait_for(browser, lambda d: text_of(d, "icpt-status").startswith("Answered"), "an answer after the error")

    # save the bank, download it as a browser would
    element(browser, "#icpt-save").click()
    link = wait_for(browser, lambda d: element(d, "#icpt-saved a[href*='concepts.safetensors']"), "the saved bank")
    saved = tmp_path / "downloaded.safetensors"
    with urllib.request.urlopen(link.get_attribute("href"), timeout=10) as response:  # 127.0.0.1 only
        saved.write_bytes(response.read())
    assert ConceptBank.load(saved).labels == ["<bo>"]

    # another visitor (a new tab is a new session) sees none of these concepts, then loads the saved bank
    first = browser.current_window_handle
    browser.switch_to.new_window("tab")
    try:
        open_app(browser, server)
        assert "No concepts yet" in text_of(browser, "icpt-concepts") and "<bo>" not in browser.page_source
        upload(browser, "icpt-bank-file", [saved])
        wait_for(browser, lambda d: has_file(d, "icpt-bank-file", "downloaded.safetensors"), "the bank to upload")
        element(browser, "#icpt-load").click()
        wait_for(browser, lambda d: "Loaded 1 concept(s): <bo>" in text_of(d, "icpt-status"), "the bank to load")
        assert "from a bank file" in text_of(browser, "icpt-concepts")
        # the example button fills in photos of a new identity and a free name: add it
        element(browser, "#icpt-example").click()
        wait_for(browser, lambda d: has_file(d, "icpt-photos", "kiki_3.png"), "the example photos")
        element(browser, "#icpt-add").click()
        wait_for(browser, lambda d: "Added <kiki>" in text_of(d, "icpt-status"), "the example concept to be added")
    finally:
        browser.close()
        browser.switch_to.window(first)
    assert time.monotonic() - started < 60
