"""The retrieval evaluation set: three documents written for this project about a fictional
company (an annual report, an earnings-call transcript, a broker's note), made into PDFs with
fpdf2, and 45 questions an analyst would ask, each with the document and page that answers it.

Everything here is invented (Northwind Instruments plc does not exist); figures are consistent
within the set so a reply can be checked against its sources. ``build(folder)`` writes the PDFs
(byte-identical on every run); ``big_pdf(pages)`` makes a long report for ingest benchmarks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from fpdf import FPDF

Page = tuple[str, str]  # (heading, body: paragraphs separated by blank lines)

ANNUAL = "northwind-annual-report-2025.pdf"
CALL = "northwind-q3-2025-call.pdf"
NOTE = "calder-research-precision-instruments.pdf"

DOCUMENTS: dict[str, list[Page]] = {
    ANNUAL: [
        (
            "Northwind Instruments plc - Annual Report and Accounts 2025",
            "For the year ended 31 December 2025. Northwind Instruments designs and manufactures "
            "measurement and monitoring instruments for industrial, medical and aerospace customers "
            "in 38 countries. Registered office: Kirkstall Works, Leeds LS5 3BT, England.\n\n"
            "Contents: chair's letter, highlights, strategy, segment reviews, costs and people, "
            "cash flow, balance sheet and financing, pensions, principal risks, outlook and "
            "shareholder information.",
        ),
        (
            "Letter from the Chair",
            "Dear shareholder, 2025 was a year of record revenue and of change in the boardroom. "
            "Margaret Okafor succeeded Sir Alan Pryce as Chair in March 2025, after nine years on "
            "the board.\n\n"
            "The board proposes a final dividend of 12.4 pence per share, making a total dividend "
            "for the year of 18.5 pence, up 8.8% on last year, in line with our progressive policy "
            "of covering the dividend about 3.5 times with adjusted earnings.",
        ),
        (
            "Financial highlights",
            "Revenue was £1,284.6 million, up 11.6% from £1,151.2 million in 2024; organic growth, "
            "excluding acquisitions and currency, was 8.3%.\n\n"
            "Adjusted operating profit rose to £201.3 million, a margin of 15.7%. Statutory profit "
            "before tax was £166.9 million. Adjusted earnings per share were 64.2 pence (2024: 57.9 "
            "pence). Free cash flow was £142.8 million.",
        ),
        (
            "Our strategy",
            "We grow through three priorities: sensors that stay calibrated longer, software that "
            "turns readings into maintenance decisions, and a presence close to customers in North "
            "America and Asia.\n\n"
            "In July 2025 we completed the acquisition of Halvorsen Sensors AS of Norway for a "
            "consideration of £96 million, adding subsea pressure sensors and 310 engineers. "
            "Halvorsen contributed £21.7 million of revenue in the five months we owned it.",
        ),
        (
            "Segment review: Industrial",
            "Industrial is our largest division, serving process plants, utilities and factories. "
            "Revenue was £702.4 million (2024: £655.0 million) and the adjusted operating margin "
            "was 17.9%.\n\n"
            "Demand for gas detection was strong in the Middle East, while sales of flow meters to "
            "Chinese chemical producers fell by about 12% as customers deferred projects.",
        ),
        (
            "Segment review: Medical",
            "The Medical division makes patient monitoring instruments used in hospitals and at "
            "home. Revenue grew to £411.9 million, with organic growth of 14.2%, the fastest in "
            "the group.\n\n"
            "In September 2025 the US Food and Drug Administration gave 510(k) clearance to the "
            "CardioTrace wearable heart monitor, which we expect to launch in the United States in "
            "the first half of 2026.",
        ),
        (
            "Segment review: Aerospace",
            "Aerospace supplies sensors for engine health monitoring and cabin pressure control to "
            "aircraft makers and airlines. Revenue was £170.3 million.\n\n"
            "The order backlog at year end stood at £388 million, covering more than two years of "
            "sales, after a five-year supply agreement signed with a European engine maker.",
        ),
        (
            "Costs and people",
            "Research and development expense was £88.7 million, equal to 6.9% of revenue, as we "
            "added engineers for the CardioTrace launch and for software.\n\n"
            "At year end we employed 6,420 people, of whom 1,150 are engineers. Energy costs fell "
            "by £4.1 million as we moved our Leeds and Tampere plants to renewable power "
            "contracts. Employee turnover was 9.4%.",
        ),
        (
            "Cash flow",
            "Cash generated from operations was £231.0 million. Capital expenditure was £61.5 "
            "million, mostly for a new clean room in Tampere.\n\n"
            "Working capital absorbed £23.4 million because we held more semiconductor stock. "
            "Cash conversion, free cash flow as a share of adjusted earnings, was 91%.",
        ),
        (
            "Balance sheet and financing",
            "Net debt at 31 December 2025 was £312.0 million, or 1.4 times EBITDA, after paying "
            "for Halvorsen.\n\n"
            "We have a £500 million revolving credit facility maturing in 2029, of which £180 "
            "million was drawn, and $150 million of US private placement notes carrying a fixed "
            "coupon of 5.35%, due in 2031.",
        ),
        (
            "Pensions",
            "The group's UK defined benefit pension scheme, closed to new members since 2009, "
            "showed an accounting surplus of £27.6 million under IAS 19.\n\n"
            "The triennial actuarial valuation as at April 2025 agreed with the trustees ended "
            "the deficit recovery payments of £6 million a year.",
        ),
        (
            "Principal risks",
            "Supply chain: a few suppliers make the semiconductors we use; we now hold six months "
            "of stock for critical chips.\n\n"
            "Currency: 43% of revenue is earned in US dollars while most costs are in sterling, "
            "so a weaker dollar lowers reported profit; we hedge about 60% of the next twelve "
            "months' exposure. Cyber security: a ransomware attack could stop production.",
        ),
        (
            "Outlook for 2026",
            "For 2026 we expect organic revenue growth of 6% to 8% and an adjusted operating "
            "margin between 16.0% and 16.5%.\n\n"
            "Capital expenditure should be about £70 million, and the effective tax rate about "
            "25%. The CardioTrace launch adds costs in the first half and revenue in the second.",
        ),
        (
            "Shareholder information",
            "The Annual General Meeting will be held at 11:00 on 14 May 2026 at the Royal "
            "Armouries, Leeds. Shares trade on the London Stock Exchange under the ticker NWI.\n\n"
            "The final dividend will be paid on 5 June 2026 to shareholders on the register on "
            "24 April 2026. Our registrar is Meridian Share Services.",
        ),
    ],
    CALL: [
        (
            "Northwind Instruments - Q3 2025 trading update call",
            "Transcript of the conference call held on 23 October 2025. Participants: Daniel "
            "Reyes, Chief Executive; Priya Natarajan, Chief Financial Officer; Tom Ashby, Head of "
            "Investor Relations; analysts from four banks.\n\n"
            "Tom Ashby: Good morning, and welcome. Remarks may include forward-looking "
            "statements.",
        ),
        (
            "Chief Executive's remarks",
            "Daniel Reyes: Orders in the third quarter rose 9% on the same quarter last year, and "
            "the book-to-bill ratio was 1.08, so the order book keeps growing.\n\n"
            "China remains weak: Industrial orders there fell again, while North American orders "
            "grew in every division. Halvorsen is performing ahead of our acquisition case.",
        ),
        (
            "Chief Financial Officer's remarks",
            "Priya Natarajan: Revenue for the quarter was £327.5 million, and the gross margin "
            "improved to 44.1% from 42.6% a year ago, helped by price and mix.\n\n"
            "We now expect an effective tax rate of 24.5% for the full year, and net finance "
            "costs of about £19 million.",
        ),
        (
            "Questions and answers: pricing",
            "Analyst (Barclays): How much of the growth was price?\n\n"
            "Daniel Reyes: Price increases contributed about 3 percentage points of the organic "
            "growth this year; volumes did the rest. We raised list prices twice, in January and "
            "in July.",
        ),
        (
            "Questions and answers: Halvorsen and capital returns",
            "Analyst (Jefferies): What synergies do you expect from Halvorsen?\n\n"
            "Priya Natarajan: We target annual cost synergies of £8 million by 2027, mainly from "
            "purchasing and shared sites. We are also launching a share buyback of up to £50 "
            "million, to be completed within twelve months.",
        ),
        (
            "Closing remarks",
            "Priya Natarajan: Inventory days came down to 96 from 104 at the half year as chip "
            "supplies normalised.\n\n"
            "Daniel Reyes: Thank you all. Our full-year results will be published on 3 March "
            "2026.",
        ),
    ],
    NOTE: [
        (
            "Calder Research - Northwind Instruments: initiating at Overweight",
            "We initiate coverage of Northwind Instruments with an Overweight rating and a price "
            "target of 1,450 pence, 27% above the current share price of 1,142 pence.\n\n"
            "Our thesis: medical monitoring growth, the CardioTrace launch and a re-rating as "
            "margins converge on peers.",
        ),
        (
            "Peer valuation",
            "Northwind trades on 11.2 times 2026 estimated EV/EBITDA, against 13.5 times for "
            "Calder-covered peer Brightwater Controls and 15.8 times for Ostrava Metrology.\n\n"
            "The discount has averaged 18% over five years; we think half of it should close as "
            "Medical becomes a larger share of profit.",
        ),
        (
            "Risks to our view",
            "Downside risks: a delay to the CardioTrace launch, tariffs on instruments imported "
            "into the United States, and a stronger pound.\n\n"
            "Upside risks: faster aerospace recovery and further bolt-on acquisitions funded "
            "from free cash flow.",
        ),
        (
            "Our estimates",
            "We forecast 2026 revenue of £1,372 million and adjusted earnings per share of 70.1 "
            "pence, rising to 77.4 pence in 2027.\n\n"
            "Our 2026 adjusted operating margin estimate is 16.3%, within company guidance.",
        ),
        (
            "Valuation method and disclosures",
            "Our price target comes from a discounted cash flow valuation using a weighted "
            "average cost of capital of 8.2% and terminal growth of 2.5%.\n\n"
            "Calder Research acts as corporate broker to none of the companies mentioned. This "
            "note was completed on 2 November 2025.",
        ),
    ],
}


@dataclass(frozen=True)
class Question:
    text: str
    document: str
    page: int
    figure: str | None = None  # what a correct answer quotes, where it is one figure


QUESTIONS: list[Question] = [
    Question("What was Northwind's total revenue in 2025?", ANNUAL, 3, "1,284.6"),
    Question("How much did revenue grow organically last year?", ANNUAL, 3, "8.3%"),
    Question("What were adjusted earnings per share for 2025?", ANNUAL, 3, "64.2"),
    Question("How much free cash flow did the group generate?", ANNUAL, 3, "142.8"),
    Question("What was statutory profit before tax?", ANNUAL, 3, "166.9"),
    Question("What total dividend does the board propose for the year?", ANNUAL, 2, "18.5"),
    Question("Who became chair of the board in 2025?", ANNUAL, 2),
    Question("How much did Northwind pay for Halvorsen Sensors?", ANNUAL, 4, "96"),
    Question("How much revenue did the Halvorsen acquisition contribute?", ANNUAL, 4, "21.7"),
    Question("What are the three strategic priorities?", ANNUAL, 4),
    Question("What was the Industrial division's operating margin?", ANNUAL, 5, "17.9%"),
    Question("How did flow meter sales to Chinese chemical customers develop?", ANNUAL, 5),
    Question("What organic growth did the Medical segment achieve?", ANNUAL, 6, "14.2%"),
    Question("When did the CardioTrace heart monitor get FDA clearance?", ANNUAL, 6),
    Question("How large is the aerospace order backlog?", ANNUAL, 7, "388"),
    Question("What revenue did Aerospace report?", ANNUAL, 7, "170.3"),
    Question("How much was spent on research and development?", ANNUAL, 8, "88.7"),
    Question("How many employees does the company have?", ANNUAL, 8, "6,420"),
    Question("By how much did energy costs fall?", ANNUAL, 8, "4.1"),
    Question("What was capital expenditure in 2025?", ANNUAL, 9, "61.5"),
    Question("What was the cash conversion rate?", ANNUAL, 9, "91%"),
    Question("Why did working capital absorb cash?", ANNUAL, 9, "23.4"),
    Question("What is the group's net debt and leverage?", ANNUAL, 10, "312.0"),
    Question("When does the revolving credit facility mature?", ANNUAL, 10, "2029"),
    Question("What coupon do the US private placement notes pay?", ANNUAL, 10, "5.35%"),
    Question("Is the defined benefit pension scheme in surplus?", ANNUAL, 11, "27.6"),
    Question("What share of revenue is earned in US dollars?", ANNUAL, 12, "43%"),
    Question("How does the company manage semiconductor supply risk?", ANNUAL, 12),
    Question("What organic growth does management guide for 2026?", ANNUAL, 13),
    Question("What capex is planned for next year?", ANNUAL, 13, "70"),
    Question("When is the annual general meeting?", ANNUAL, 14),
    Question("What is the stock ticker?", ANNUAL, 14),
    Question("How much did orders grow in the third quarter?", CALL, 2, "9%"),
    Question("What was the book-to-bill ratio in Q3?", CALL, 2, "1.08"),
    Question("What was third-quarter revenue?", CALL, 3, "327.5"),
    Question("How did the gross margin change in the quarter?", CALL, 3, "44.1%"),
    Question("What full-year tax rate does the CFO expect?", CALL, 3, "24.5%"),
    Question("How much of the growth came from price increases?", CALL, 4),
    Question("What cost synergies are targeted from Halvorsen?", CALL, 5, "8"),
    Question("How large is the share buyback programme?", CALL, 5, "50"),
    Question("How many inventory days did the company report?", CALL, 6, "96"),
    Question("Who are the CEO and CFO of Northwind?", CALL, 1),
    Question("What rating and price target does Calder Research give?", NOTE, 1, "1,450"),
    Question("What EV/EBITDA multiple does Northwind trade on versus peers?", NOTE, 2, "11.2"),
    Question("What are the downside risks in the broker's view?", NOTE, 3),
    Question("What earnings per share does the broker forecast for 2027?", NOTE, 4, "77.4"),
    Question("What WACC does the discounted cash flow valuation use?", NOTE, 5, "8.2%"),
]


class _Report(FPDF):
    def footer(self) -> None:  # called by fpdf2 as each page is finished
        self.set_y(-15)
        self.set_font("Helvetica", size=8)
        self.cell(0, 5, f"Page {self.page_no()}", align="C")


def pdf(pages: list[Page], *, title: str = "") -> bytes:
    """A PDF with one page per (heading, body), the same bytes on every run."""
    doc = _Report()
    doc.set_creation_date(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    if title:
        doc.set_title(title)
    for heading, body in pages:
        doc.add_page()
        doc.set_font("Helvetica", "B", 14)
        doc.multi_cell(0, 8, heading, new_x="LMARGIN", new_y="NEXT")
        doc.ln(2)
        doc.set_font("Helvetica", size=10)
        for paragraph in body.split("\n\n"):
            doc.multi_cell(0, 5, paragraph, new_x="LMARGIN", new_y="NEXT")
            doc.ln(3)
    return bytes(doc.output())


def build(folder: Path) -> dict[str, Path]:
    """Write the three PDFs into ``folder``; their paths by name."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, pages in DOCUMENTS.items():
        path = folder / name
        path.write_bytes(pdf(pages, title=pages[0][0]))
        paths[name] = path
    return paths


def big_pdf(pages: int) -> bytes:
    """A long report: the set's pages over and over, each copy's figures shifted so that no
    two pages say the same."""
    source = [page for name in DOCUMENTS for page in DOCUMENTS[name]]
    made = []
    for i in range(pages):
        heading, body = source[i % len(source)]
        edition = i // len(source)
        made.append((f"{heading} ({2025 - edition})", body.replace("2025", str(2025 - edition))))
    return pdf(made, title="A long report")
