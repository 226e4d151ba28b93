#!/usr/bin/env python3
"""Regenerate the binary sample documents that Sift indexes on first run.

    python resources/make_samples.py

writes, next to this file:

    espresso-machine-manual.pdf   5 pages, built by the small PDF writer below
    lease-summary.docx            python-docx
    household-budget-2026.xlsx    openpyxl, two sheets
    photosynthesis-talk.pptx      python-pptx, five slides with speaker notes

The generated files are committed, so the app never runs this script; run it only after
editing the text here. Needs python-docx, openpyxl and python-pptx (all in the dev
environment). Output is deterministic: fixed document dates, fixed zip timestamps, no
compression in the PDF, so rerunning without changes gives byte-identical files.

All text is original, written for Sift, and released under CC0 (see ../LICENSES.md).
"""

from __future__ import annotations

import datetime as dt
import io
import re
import sys
import textwrap
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent / "samples"
FIXED_DATE = dt.datetime(2026, 1, 15, 9, 0, 0)
ZIP_DATE = (2026, 1, 15, 9, 0, 0)
AUTHOR = "Sift sample documents"

# ---------------------------------------------------------------------------------------
# Espresso machine manual (PDF)
#
# Each page is a list of blocks: ("h1" | "h2", text), ("p", text) or ("li", text).
# Page 3 is cleaning and descaling; page 4 is troubleshooting. The manual deliberately
# talks about "descaling" and "mineral deposits", never the word people type into search.
# ---------------------------------------------------------------------------------------

MANUAL_TITLE = "Fernhill Barista One - Espresso Machine - User Manual"

MANUAL_PAGES: list[list[tuple[str, str]]] = [
    [
        ("h1", "Fernhill Barista One"),
        ("p", "Semi-automatic espresso machine with steam wand. Model FB-1, 230 V. Thank you for "
              "choosing the Barista One. Please read this manual before using the machine for "
              "the first time and keep it for later reference."),
        ("h2", "Important safety instructions"),
        ("li", "Connect the machine only to an earthed socket with the voltage shown on the rating "
               "plate underneath the machine."),
        ("li", "Never immerse the machine, the cable or the plug in water or any other liquid. "
               "Unplug it before cleaning and let it cool down."),
        ("li", "The group head, the portafilter, the steam wand and the cup-warming tray become very "
               "hot during use. Touch only the handles and knobs."),
        ("li", "Never remove the portafilter while the pump is running or while the brew light is "
               "flashing: hot water under pressure can spray out."),
        ("li", "Point the steam wand into the drip tray or a milk jug before opening the steam "
               "knob. Steam causes severe burns."),
        ("li", "Children must not play with the machine. Cleaning and maintenance must not be "
               "carried out by children without supervision."),
        ("li", "Use only fresh, cold drinking water. Do not fill the tank with milk, sparkling "
               "water, or hot water."),
        ("h2", "Parts of the machine"),
        ("li", "1. Removable water tank (1.8 litres), at the back, with lid."),
        ("li", "2. Cup-warming tray on top."),
        ("li", "3. Control panel: power button, one-cup and two-cup buttons, steam button, and the "
               "service light (orange) that reminds you when descaling is needed."),
        ("li", "4. Pressure gauge showing the extraction pressure in bar."),
        ("li", "5. Group head with shower screen, where the portafilter locks in."),
        ("li", "6. Portafilter (58 mm) with single and double filter baskets."),
        ("li", "7. Steam wand with two-hole tip, and the steam knob on the right side."),
        ("li", "8. Drip tray with float that pops up when the tray is full."),
        ("h2", "What is in the box"),
        ("p", "Machine, portafilter, single basket, double basket, blind (solid) basket for "
              "back-flushing, tamper, stainless-steel milk jug (350 ml), cleaning brush, one "
              "sachet of descaling solution, water-hardness test strip, and this manual."),
    ],
    [
        ("h1", "Getting started and brewing"),
        ("h2", "Before the first use"),
        ("li", "Rinse the water tank, fill it to the MAX mark with fresh cold water and slide it "
               "back until it clicks."),
        ("li", "Dip the test strip from the box into tap water for one second and read the water "
               "hardness after one minute. You will need this value for the descaling interval "
               "on page 3."),
        ("li", "Switch the machine on. The buttons flash while it heats up (about 30 seconds) and "
               "stay lit when it is ready."),
        ("li", "Insert the empty portafilter and press the two-cup button twice to rinse the "
               "system. Then open the steam knob for 10 seconds over the drip tray."),
        ("h2", "Making an espresso"),
        ("li", "Grind: use freshly ground coffee, as fine as table salt or slightly finer. Coffee "
               "ground for filter brewing is too coarse for espresso."),
        ("li", "Dose: about 9 g for the single basket and 18 g for the double basket. A small "
               "kitchen scale gives much more consistent results than the measuring spoon."),
        ("li", "Distribute and tamp: level the grounds, then press down firmly and evenly with the "
               "tamper until the surface is flat and polished. Wipe loose grounds from the rim."),
        ("li", "Lock the portafilter into the group head by turning it firmly to the right."),
        ("li", "Place one or two preheated cups under the spouts and press the one-cup (30 ml) or "
               "two-cup (60 ml) button. The machine stops by itself."),
        ("li", "A good shot starts to flow after 5 to 8 seconds, runs like warm honey, and takes "
               "25 to 30 seconds in total. The gauge needle should sit in the grey zone "
               "(8 to 10 bar). If the result is too fast, too slow, sour or bitter, see the "
               "troubleshooting section on page 4."),
        ("h2", "Programming the cup volume"),
        ("p", "Hold the one-cup button for three seconds until it flashes, then release. The pump "
              "starts; press the button again when the cup holds the amount you want. The new "
              "volume is stored even when the machine is unplugged."),
        ("h2", "Steaming and frothing milk"),
        ("li", "Press the steam button. It flashes while the boiler heats to steam temperature and "
               "stays lit when ready (about 20 seconds)."),
        ("li", "Purge the wand: open the knob briefly over the drip tray to release condensed water."),
        ("li", "Fill the jug to just below the spout with cold milk. Whole milk froths most easily; "
               "barista versions of oat milk also work well."),
        ("li", "Hold the tip just under the surface and open the knob fully. Lower the jug slightly "
               "to let air in (a gentle tearing sound) until the volume has grown by a third, then "
               "sink the tip deeper to swirl and heat the milk. Stop at about 60 to 65 °C, "
               "when the jug becomes too hot to hold comfortably."),
        ("li", "Close the knob, wipe the wand at once with a damp cloth and purge it again. Dried "
               "milk is very hard to remove later."),
        ("li", "Press the steam button again to return to brewing temperature. Let a little water "
               "run through the group head before the next espresso, otherwise it will taste burnt."),
    ],
    [
        ("h1", "Care, cleaning and descaling"),
        ("p", "Regular care keeps the coffee tasting clean and protects the heating system. Oils "
              "from the coffee build up in the group head and filter baskets, and the minerals "
              "dissolved in tap water slowly form a hard, chalky layer inside the boiler, the "
              "pipes and the valves. These mineral deposits insulate the heating element, slow "
              "down the flow, make the pump work harder and can eventually block the machine "
              "completely. Damage caused by skipped descaling is not covered by the warranty."),
        ("h2", "After every use"),
        ("li", "Knock out the used coffee puck, rinse the basket and wipe the shower screen."),
        ("li", "Wipe and purge the steam wand."),
        ("li", "Empty the drip tray when the red float appears."),
        ("h2", "Every week: back-flushing"),
        ("li", "Insert the blind (solid) basket with half a teaspoon of espresso-machine cleaning "
               "powder. Lock in the portafilter and press the two-cup button. Stop after 10 "
               "seconds, wait 10 seconds, and repeat five times. Then rinse the same way with the "
               "blind basket and no powder. This removes coffee oils from the valve and group head."),
        ("li", "Soak the portafilter baskets (not the plastic handle) in hot water with cleaning "
               "powder for 15 minutes."),
        ("h2", "How often to descale"),
        ("p", "The interval depends on how hard your water is, measured with the test strip from "
              "the box. The orange service light also comes on after a set number of cycles. Use "
              "it as a reminder, but follow the table if your water is harder than expected."),
        ("li", "Soft water (test strip 1, below 7 dH): every 3 months."),
        ("li", "Medium water (test strip 2, 7 to 14 dH): every 2 months."),
        ("li", "Hard water (test strip 3, 14 to 21 dH): every month."),
        ("li", "Very hard water (test strip 4, above 21 dH): every 2 to 3 weeks, and we strongly "
               "recommend a water filter cartridge or bottled water low in minerals."),
        ("h2", "Descaling procedure (about 30 minutes)"),
        ("p", "Descaling dissolves the white, crusty mineral build-up left by hard water with a "
              "mild acid and flushes it out of the boiler and pipes."),
        ("li", "1. Remove the portafilter and empty the drip tray. Take out the water filter "
               "cartridge if one is fitted."),
        ("li", "2. Dissolve one sachet of Fernhill descaling solution (or 100 ml of a liquid "
               "descaler based on lactic or citric acid) in 1 litre of water and pour it into the "
               "tank. Never use vinegar: it attacks the seals and leaves a taste for weeks."),
        ("li", "3. Place a large container (at least 1.5 litres) under the group head and the "
               "steam wand."),
        ("li", "4. With the machine switched on and heated, hold the one-cup and steam buttons "
               "together for 5 seconds. The orange light flashes: descaling mode is active."),
        ("li", "5. Press the two-cup button. The machine pumps solution through the group head in "
               "short bursts. When it pauses, open the steam knob for 20 seconds, then close it."),
        ("li", "6. Let the solution work for 15 minutes with the machine on. It dissolves the "
               "deposits; you may see white flakes in the container."),
        ("li", "7. Press the two-cup button again and let the rest of the solution run through "
               "until the tank is empty."),
        ("li", "8. Rinse the tank thoroughly, fill it with fresh water to MAX, and press the two-cup "
               "button to flush. Open the steam knob for 20 seconds during the flush. Repeat with "
               "a second full tank of clean water."),
        ("li", "9. Hold the one-cup and steam buttons for 5 seconds to leave descaling mode. The "
               "orange light goes out and the counter resets."),
    ],
    [
        ("h1", "Troubleshooting"),
        ("p", "Most problems come from the grind, the dose or the tamp, not from a fault in the "
              "machine. Change one thing at a time and pull a new shot after each change."),
        ("h2", "Espresso runs too fast (under 20 s), is thin and pale, tastes sour"),
        ("li", "Grind finer, a little at a time. Increase the dose by 0.5 to 1 g. Tamp harder "
               "and more evenly. Beans older than about six weeks also give fast, weak shots."),
        ("h2", "Espresso only drips or takes over 40 s, very dark, tastes bitter"),
        ("li", "Grind coarser or use less coffee. Make sure the basket is not overfilled: the "
               "tamped coffee must not touch the shower screen."),
        ("li", "If even a coarse grind drips, the shower screen may be blocked: back-flush (page 3)."),
        ("h2", "No crema, or the crema disappears at once"),
        ("li", "The beans are stale, or the cups are cold. Use beans roasted within the last four "
               "weeks and preheat the cups on the tray or with hot water."),
        ("h2", "The pump is loud but little or no water comes out"),
        ("li", "The tank is empty or not pushed in fully: refill and reseat it."),
        ("li", "Air in the system after the tank ran dry: open the steam knob and press the two-cup "
               "button until water flows steadily."),
        ("li", "Mineral deposits are restricting the flow. Descale the machine as described on "
               "page 3, twice in a row if it has not been done for a long time."),
        ("h2", "Water leaks around the portafilter during brewing"),
        ("li", "Coffee grounds on the rim of the basket: wipe the rim before locking in."),
        ("li", "The rubber group gasket is hard or worn (normally after 1 to 2 years). A spare "
               "gasket and fitting instructions are available from customer service."),
        ("h2", "The espresso is not hot enough"),
        ("li", "Preheat the cups and the portafilter, and let the machine heat for at least ten "
               "minutes after switching on. Heavy deposits on the heating element also reduce "
               "the temperature: descale."),
        ("h2", "The steam wand sputters or produces only water"),
        ("li", "Wait until the steam button stays lit, then purge the condensed water first."),
        ("li", "The holes in the tip are blocked with dried milk: unscrew the tip and clear the "
               "holes with the needle of the cleaning brush."),
        ("h2", "The orange service light is on"),
        ("li", "The machine needs descaling. The light goes out only after the complete "
               "procedure on page 3, including both rinse cycles."),
        ("h2", "All buttons flash quickly and the machine does not heat"),
        ("li", "Overheat protection has tripped, usually after steaming with an empty tank. Switch "
               "off, unplug, wait 30 minutes and switch on again. If the buttons still flash, "
               "contact customer service: do not open the machine yourself."),
        ("h2", "The machine trips the fuse or the circuit breaker"),
        ("li", "Unplug it immediately and have it checked by an authorised service centre."),
    ],
    [
        ("h1", "Technical data, warranty and service"),
        ("h2", "Specifications"),
        ("li", "Model: Fernhill Barista One, FB-1"),
        ("li", "Power supply: 220 to 240 V, 50/60 Hz; power consumption 1,450 W"),
        ("li", "Pump pressure: 15 bar maximum; extraction pressure regulated to 9 bar"),
        ("li", "Heating system: thermoblock with PID temperature control, brew temperature 93 °C"),
        ("li", "Water tank: 1.8 litres, removable"),
        ("li", "Portafilter: 58 mm, commercial size"),
        ("li", "Dimensions (W x D x H): 28 x 33 x 34 cm; weight 7.2 kg"),
        ("li", "Standby: switches off automatically after 30 minutes without use (adjustable to "
               "60 or 120 minutes in the settings menu)"),
        ("h2", "Energy saving"),
        ("p", "The auto-off function reduces standby consumption to below 0.5 W. To change the "
              "delay, hold the power and two-cup buttons for 5 seconds; the number of flashes "
              "shows the current setting (1 = 30 minutes, 2 = 60 minutes, 3 = 120 minutes)."),
        ("h2", "Warranty"),
        ("p", "Fernhill guarantees this machine against defects in materials and workmanship for "
              "two years from the date of purchase. Keep your receipt. The warranty does not "
              "cover wear parts such as gaskets, shower screens and filter baskets; damage from "
              "falls, incorrect voltage or commercial use; or failures caused by mineral "
              "deposits when the machine has not been descaled as described on page 3."),
        ("p", "Registering the machine on our website within 30 days extends the warranty to "
              "three years."),
        ("h2", "Customer service"),
        ("p", "Before contacting us, please check the troubleshooting section on page 4. Have the "
              "serial number ready; it is printed on the rating plate underneath the machine and "
              "on the side of the box. Contact: support@fernhill.example, weekdays 8:00 to 18:00."),
        ("h2", "Disposal"),
        ("p", "Electrical appliances must not be thrown away with household waste. At the end of "
              "its life, take the machine to a municipal collection point for electrical and "
              "electronic equipment. The packaging is made of recyclable cardboard and paper."),
    ],
]


def pdf_escape(text: str) -> bytes:
    """Encode text for a PDF literal string in WinAnsiEncoding, escaping \\ ( )."""
    raw = text.encode("cp1252")
    out = bytearray()
    for b in raw:
        if b in b"\\()":
            out += b"\\" + bytes([b])
        elif b < 32 or b > 126:
            out += b"\\%03o" % b
        else:
            out.append(b)
    return bytes(out)


def layout_page(blocks: list[tuple[str, str]], page_no: int, page_count: int) -> bytes:
    """Return the content stream of one A4 page: one BT..ET with Td-positioned lines."""
    width = 90
    styles = {"h1": ("F2", 16, 24), "h2": ("F2", 11, 18), "p": ("F1", 10, 13), "li": ("F1", 10, 13)}
    left, top = 56, 800
    lines: list[tuple[str, int, int, float, str]] = []  # font, size, leading, x, text
    lines.append(("F1", 8, 20, left, MANUAL_TITLE))
    for kind, text in blocks:
        font, size, leading = styles[kind]
        if kind == "li":
            wrapped = textwrap.wrap(text, width - 4, break_on_hyphens=False)
            for i, line in enumerate(wrapped):
                numbered = re.match(r"\d+\. ", text) is not None
                prefix = "- " if i == 0 and not numbered else ""
                indent = left + 8 if i == 0 else left + (20 if numbered else 17)
                lines.append((font, size, leading, indent, prefix + line))
        else:
            for line in textwrap.wrap(text, width if kind == "p" else 70, break_on_hyphens=False):
                lines.append((font, size, leading, left, line))
    footer = f"Page {page_no} of {page_count}"

    y = top
    ops = [b"BT"]
    cur_x, cur_y = 0.0, 0.0
    cur_font = None
    for i, (font, size, leading, x, text) in enumerate(lines):
        if i > 0:
            y -= leading
        if y < 60:
            raise ValueError(f"page {page_no} overflows; move text to another page")
        if (font, size) != cur_font:
            ops.append(b"/%s %d Tf" % (font.encode(), size))
            cur_font = (font, size)
        ops.append(b"%g %g Td" % (x - cur_x, y - cur_y))
        cur_x, cur_y = x, y
        ops.append(b"(" + pdf_escape(text) + b") Tj")
    ops.append(b"/F1 8 Tf")
    ops.append(b"%g %g Td" % (left - cur_x, 40 - cur_y))
    ops.append(b"(" + pdf_escape(footer) + b") Tj")
    ops.append(b"ET")
    return b"\n".join(ops) + b"\n"


def write_pdf(path: Path) -> None:
    """A minimal PDF 1.4 writer: catalog, pages, two standard Type1 fonts, info, xref."""
    n = len(MANUAL_PAGES)
    # Object numbers: 1 catalog, 2 pages, 3 Helvetica, 4 Helvetica-Bold, 5 info,
    # then for page i: 6 + 2i is the page, 7 + 2i its content stream.
    page_ids = [6 + 2 * i for i in range(n)]
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % p for p in page_ids)
        + b"] /Count %d >>" % n,
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        4: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
        5: b"<< /Title (" + pdf_escape(MANUAL_TITLE) + b") /Author (" + pdf_escape(AUTHOR)
        + b") /Producer (Sift make_samples.py) /CreationDate (D:20260115090000Z)"
        b" /ModDate (D:20260115090000Z) >>",
    }
    for i, blocks in enumerate(MANUAL_PAGES):
        stream = layout_page(blocks, i + 1, n)
        objects[6 + 2 * i] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842]"
            b" /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents %d 0 R >>" % (7 + 2 * i)
        )
        objects[7 + 2 * i] = b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream"

    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for num in sorted(objects):
        offsets[num] = out.tell()
        out.write(b"%d 0 obj\n" % num + objects[num] + b"\nendobj\n")
    xref_at = out.tell()
    size = max(objects) + 1
    out.write(b"xref\n0 %d\n" % size)
    out.write(b"0000000000 65535 f \n")
    for num in range(1, size):
        out.write(b"%010d 00000 n \n" % offsets[num])
    out.write(b"trailer\n<< /Size %d /Root 1 0 R /Info 5 0 R >>\n" % size)
    out.write(b"startxref\n%d\n%%%%EOF\n" % xref_at)
    path.write_bytes(out.getvalue())


# ---------------------------------------------------------------------------------------
# Zip-based Office files: make them reproducible
# ---------------------------------------------------------------------------------------

def normalize_zip(path: Path) -> None:
    """Rewrite an OOXML zip with fixed member timestamps and fixed core-property dates."""
    stamp = FIXED_DATE.strftime("%Y-%m-%dT%H:%M:%SZ")
    with zipfile.ZipFile(path) as src:
        members = [(info.filename, src.read(info.filename)) for info in src.infolist()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for name, data in members:
            if name == "docProps/core.xml":
                text = data.decode("utf-8")
                text = re.sub(r"(<dcterms:(?:created|modified)[^>]*>)[^<]*(<)", rf"\g<1>{stamp}\g<2>", text)
                data = text.encode("utf-8")
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            dst.writestr(info, data)
    path.write_bytes(buf.getvalue())


def set_core(props, title: str, subject: str, keywords: str) -> None:
    props.title = title
    props.subject = subject
    props.author = AUTHOR
    props.last_modified_by = AUTHOR
    props.keywords = keywords
    props.created = FIXED_DATE
    props.modified = FIXED_DATE
    props.revision = 1
    props.comments = "Sample document for Sift; text released under CC0."


# ---------------------------------------------------------------------------------------
# Lease summary (DOCX)
# ---------------------------------------------------------------------------------------

RENT = 1150
SERVICE = 95
PAYMENT_SCHEDULE = [  # (period, date the transfer must arrive)
    ("May 2026", "Friday 1 May 2026"),
    ("June 2026", "Monday 1 June 2026"),
    ("July 2026", "Wednesday 1 July 2026"),
    ("August 2026", "Saturday 1 August 2026"),
    ("September 2026", "Tuesday 1 September 2026"),
    ("October 2026", "Thursday 1 October 2026"),
    ("November 2026", "Sunday 1 November 2026"),
    ("December 2026", "Tuesday 1 December 2026"),
    ("January 2027", "Friday 1 January 2027"),
    ("February 2027", "Monday 1 February 2027"),
    ("March 2027", "Monday 1 March 2027"),
    ("April 2027", "Thursday 1 April 2027"),
]


def write_docx(path: Path) -> None:
    from docx import Document
    from docx.shared import Pt

    doc = Document()
    set_core(doc.core_properties, "Lease summary: Flat 3, 27 Linden Row",
             "Summary of my tenancy agreement", "lease, tenancy, rent, deposit, landlord")
    doc.styles["Normal"].font.size = Pt(11)

    doc.add_heading("Lease summary: Flat 3, 27 Linden Row", level=0)
    doc.add_paragraph(
        "My own plain-language summary of the tenancy agreement signed on 10 April 2026, so I "
        "do not have to dig through the 22-page contract every time. The signed original is in "
        "the blue folder in the desk drawer; if this summary and the contract disagree, the "
        "contract wins.")

    doc.add_heading("Parties and property", level=1)
    for label, value in [
        ("Landlord", "Margaret Olufemi, represented by Hollis & Grant Property Management"),
        ("Tenant", "Alex Moreau"),
        ("Property", "Flat 3 (second floor), 27 Linden Row, with cellar storage unit 3B and one "
                     "bicycle space in the shared shed. Unfurnished except the kitchen appliances."),
        ("Managing agent contact", "Hollis & Grant, lettings@hollisgrant.example, phone 0161 555 0193; "
                                   "emergency repairs line 0800 555 0177 (24 hours)"),
    ]:
        p = doc.add_paragraph(style="List Bullet")
        p.add_run(label + ": ").bold = True
        p.add_run(value)

    doc.add_heading("Term", level=1)
    doc.add_paragraph(
        "Fixed term of twelve months from 1 May 2026 to 30 April 2027. After that the tenancy "
        "continues month by month unless either side gives notice. There is a break clause "
        "after six months: from 1 November 2026 either party may end the lease early with two "
        "months' written notice.")

    doc.add_heading("Rent and payment", level=1)
    doc.add_paragraph(
        f"Monthly rent is {RENT:,} EUR plus a service-charge advance of {SERVICE} EUR for heating, "
        f"water, rubbish collection and cleaning of the stairwell, so {RENT + SERVICE:,} EUR in "
        "total each month. The rent has to be paid in advance and must reach the landlord's "
        "account on the first day of each month at the latest. There is a grace period of "
        "three days; after that the contract allows a late fee of 25 EUR plus statutory "
        "interest. I have set up a standing order that leaves my account on the 28th of the "
        "previous month.")
    doc.add_paragraph(
        "Bank details: Hollis & Grant client account, IBAN DE00 1234 5678 9012 3456 78, "
        "reference \"Linden Row 27 / Flat 3 / Moreau\".")
    doc.add_paragraph(
        "Rent review: the rent may be increased once a year, at the earliest from 1 May 2027, "
        "with at least two months' written notice and by no more than the change in the "
        "consumer price index.")

    doc.add_heading("Payment schedule for the first year", level=2)
    table = doc.add_table(rows=1, cols=4)
    table.style = "Table Grid"
    for cell, text in zip(table.rows[0].cells, ["Month", "Payment due by", "Amount (EUR)", "Paid"]):
        cell.text = ""
        cell.paragraphs[0].add_run(text).bold = True
    for i, (month, due) in enumerate(PAYMENT_SCHEDULE):
        row = table.add_row().cells
        row[0].text = month
        row[1].text = due
        row[2].text = f"{RENT + SERVICE:,}"
        row[3].text = "yes" if i < 1 else ""
    doc.add_paragraph(
        "When the first falls on a weekend or public holiday, the payment is still due that "
        "day, so the standing order on the 28th keeps me safe.")

    doc.add_heading("Deposit", level=1)
    doc.add_paragraph(
        "Security deposit of three months' net rent, 3,450 EUR, paid on 12 April 2026 into a "
        "separate deposit account in my name, pledged to the landlord. It is returned with "
        "interest within six months after moving out, minus any documented damage beyond "
        "normal wear and tear and any outstanding service-charge balance.")

    doc.add_heading("Utilities and service charges", level=1)
    doc.add_paragraph(
        "Electricity and internet are my own contracts. Heating and water are included in the "
        "service-charge advance and settled once a year; the annual statement arrives by "
        "30 June for the previous calendar year, and any balance is due within 30 days. "
        "The meter readings on moving in are recorded in the handover report: electricity "
        "42,318 kWh, cold water 211.4 m3.")

    doc.add_heading("House rules and repairs", level=1)
    for text in [
        "Pets: a cat is allowed (agreed in writing); dogs need the landlord's consent.",
        "Subletting needs written permission, including short-term holiday rentals.",
        "Quiet hours 22:00 to 7:00 and on Sundays.",
        "Small repairs (taps, light switches, door handles, shower heads) are the tenant's "
        "responsibility up to 100 EUR per repair and 300 EUR per year. Anything bigger, and "
        "anything involving the boiler, wiring or the roof, must be reported to the agent.",
        "Report damp or mould within a week of noticing it. Ventilate by opening the windows "
        "fully several times a day in winter.",
        "Painting or drilling into tiles needs permission; ordinary picture hooks are fine.",
    ]:
        doc.add_paragraph(text, style="List Bullet")

    doc.add_heading("Ending the tenancy", level=1)
    doc.add_paragraph(
        "After the fixed term, the tenant may end the lease with three months' written notice "
        "to the end of a calendar month. Notice must be on paper and signed; e-mail is not "
        "enough. On moving out the flat has to be returned clean, with holes filled, and walls "
        "repainted in neutral colours if I painted them differently. All keys go back, "
        "including the cellar and shed keys (five keys in total).")
    doc.save(path)
    normalize_zip(path)


# ---------------------------------------------------------------------------------------
# Household budget (XLSX), two sheets, plain values (no formulas, so any reader sees numbers)
# ---------------------------------------------------------------------------------------

BUDGET_ROWS = [  # category, monthly budget, Jan, Feb, Mar, note
    ("Rent and service charge", 1245, 1245, 1245, 1245, "standing order on the 28th"),
    ("Electricity", 70, 88, 81, 74, "winter months higher"),
    ("Internet and mobile", 55, 55, 55, 55, "fibre 40 + SIM-only 15"),
    ("Groceries", 480, 512, 455, 497, "weekly shop plus market on Saturday"),
    ("Eating out and takeaway", 120, 164, 96, 131, "over in January: birthday dinner"),
    ("Public transport pass", 49, 49, 49, 49, "monthly ticket"),
    ("Bike and repairs", 20, 0, 37, 12, "new chain and brake pads in February"),
    ("Insurance (contents, liability)", 22, 22, 22, 22, ""),
    ("Health and pharmacy", 30, 18, 42, 9, ""),
    ("Clothes", 60, 0, 85, 140, "hiking boots in March"),
    ("Gym and climbing", 45, 45, 45, 45, ""),
    ("Streaming and subscriptions", 28, 28, 28, 33, "price rise in March"),
    ("Gifts and donations", 40, 25, 60, 30, ""),
    ("Cat (food and litter)", 35, 31, 38, 36, ""),
    ("Savings: emergency fund", 300, 300, 300, 300, "target: 6 months of expenses"),
    ("Savings: summer holiday", 150, 150, 150, 150, "Alps trek in July"),
]
INCOME = [("Net salary", 3150, 3150, 3150, 3150), ("Side income (translation)", 0, 220, 0, 180)]

ANNUAL_BILLS = [  # bill, amount, month due, how paid, note
    ("Contents and liability insurance", 264, "January", "direct debit monthly", "renew by 31 Dec"),
    ("Broadcasting fee", 55.08, "February, May, August, November", "quarterly", ""),
    ("Bike insurance", 89, "March", "annual", "covers theft from the shed"),
    ("Service-charge settlement", 0, "July", "bank transfer", "statement arrives by 30 June"),
    ("Dentist check-up and cleaning", 110, "April and October", "card", ""),
    ("Laptop and phone replacement fund", 600, "spread over the year", "savings", ""),
    ("Climbing gym annual pass discount", 480, "September", "annual", "saves 60 vs monthly"),
    ("Domain name and cloud backup", 72, "November", "card", "photo archive backup"),
    ("Christmas presents", 350, "December", "card", "set aside 30 a month"),
    ("Tax adviser", 180, "May", "bank transfer", "tax return deadline 31 July"),
]


def write_xlsx(path: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    set_core(wb.properties, "Household budget 2026", "Monthly budget and annual bills",
             "budget, expenses, savings, bills")
    ws = wb.active
    ws.title = "Monthly budget"
    bold = Font(bold=True)
    ws.append(["Household budget 2026", None, None, None, None, None])
    ws["A1"].font = Font(bold=True, size=14)
    ws.append(["All amounts in EUR. Budget is per month; January to March are actual spending."])
    ws.append([])
    ws.append(["Income", "Budget", "January", "February", "March", "Note"])
    for cell in ws[4]:
        cell.font = bold
    for row in INCOME:
        ws.append(list(row) + [""])
    ws.append(["Total income", *[sum(r[i] for r in INCOME) for i in range(1, 5)], ""])
    ws.append([])
    ws.append(["Spending", "Budget", "January", "February", "March", "Note"])
    for cell in ws[ws.max_row]:
        cell.font = bold
    for row in BUDGET_ROWS:
        ws.append(list(row))
    totals = [sum(r[i] for r in BUDGET_ROWS) for i in range(1, 5)]
    ws.append(["Total spending and saving", *totals, ""])
    income = [sum(r[i] for r in INCOME) for i in range(1, 5)]
    ws.append(["Left over", *[a - b for a, b in zip(income, totals)], "moves to savings at month end"])
    for cell in ws[ws.max_row - 1] + ws[ws.max_row]:
        cell.font = bold
    ws.column_dimensions["A"].width = 34
    ws.column_dimensions["F"].width = 40

    bills = wb.create_sheet("Annual bills")
    bills.append(["Bill", "Amount per year (EUR)", "When due", "How paid", "Note"])
    for cell in bills[1]:
        cell.font = bold
    for row in ANNUAL_BILLS:
        bills.append(list(row))
    bills.append([])
    bills.append(["Total", round(sum(r[1] for r in ANNUAL_BILLS), 2), "", "",
                  "set aside about 190 a month for these"])
    bills.column_dimensions["A"].width = 36
    bills.column_dimensions["C"].width = 32
    bills.column_dimensions["E"].width = 32
    wb.save(path)
    normalize_zip(path)


# ---------------------------------------------------------------------------------------
# Photosynthesis talk (PPTX), five slides with speaker notes
# ---------------------------------------------------------------------------------------

SLIDES = [
    ("How plants eat light",
     ["A ten-minute introduction to photosynthesis", "Science club evening, community library"],
     "Welcome everyone. Tonight: how a leaf turns sunlight, water and air into food, and why "
     "nearly every bite we eat and every breath we take depends on it."),
    ("The big picture",
     ["Carbon dioxide + water + light energy -> glucose + oxygen",
      "6 CO2 + 6 H2O -> C6H12O6 + 6 O2",
      "Happens in chloroplasts, mostly in the leaves",
      "Chlorophyll absorbs red and blue light and reflects green"],
     "Plants do not get their mass from the soil. Almost all of the dry weight of a tree comes "
     "from carbon dioxide in the air. The oxygen we breathe is released from split water "
     "molecules, not from the CO2."),
    ("Stage 1: the light-dependent reactions",
     ["Take place in the thylakoid membranes",
      "Light excites electrons in chlorophyll (photosystems II and I)",
      "Water is split: oxygen is released as a by-product",
      "Energy is stored as ATP and NADPH, the cell's rechargeable batteries"],
     "Think of this stage as a solar panel charging batteries. No sugar is made yet. Splitting "
     "water replaces the electrons that chlorophyll gives away."),
    ("Stage 2: the Calvin cycle",
     ["Takes place in the stroma, the fluid around the thylakoids",
      "The enzyme RuBisCO fixes carbon dioxide from the air",
      "ATP and NADPH from stage 1 power the building of three-carbon sugars",
      "Sugars become glucose, starch for storage, and cellulose for cell walls"],
     "RuBisCO is probably the most abundant protein on Earth, and also slow and a bit "
     "clumsy: it sometimes grabs oxygen instead of CO2. C4 plants like maize and CAM plants "
     "like cacti have evolved tricks to concentrate CO2 around it."),
    ("Why it matters",
     ["The base of almost every food chain",
      "Produces the oxygen in our atmosphere",
      "Removes carbon dioxide: forests, grasslands and ocean plankton are carbon sinks",
      "Limiting factors: light, CO2 concentration, temperature, water",
      "Try at home: pondweed in water under a lamp releases oxygen bubbles you can count"],
     "End with the experiment: move the lamp closer and the bubble rate goes up, until "
     "something else becomes the limiting factor. Questions?"),
]


def write_pptx(path: Path) -> None:
    from pptx import Presentation

    prs = Presentation()
    set_core(prs.core_properties, "How plants eat light: photosynthesis",
             "Short talk on photosynthesis", "photosynthesis, chlorophyll, Calvin cycle")
    for i, (title, bullets, notes) in enumerate(SLIDES):
        if i == 0:
            slide = prs.slides.add_slide(prs.slide_layouts[0])
            slide.shapes.title.text = title
            slide.placeholders[1].text = "\n".join(bullets)
        else:
            slide = prs.slides.add_slide(prs.slide_layouts[1])
            slide.shapes.title.text = title
            frame = slide.placeholders[1].text_frame
            frame.text = bullets[0]
            for bullet in bullets[1:]:
                frame.add_paragraph().text = bullet
        slide.notes_slide.notes_text_frame.text = notes
    prs.save(path)
    normalize_zip(path)


def main() -> int:
    outputs = {
        "espresso-machine-manual.pdf": write_pdf,
        "lease-summary.docx": write_docx,
        "household-budget-2026.xlsx": write_xlsx,
        "photosynthesis-talk.pptx": write_pptx,
    }
    for name, writer in outputs.items():
        path = HERE / name
        writer(path)
        print(f"wrote {path.relative_to(HERE.parent.parent)} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
