"""The report's LaTeX table (``summary.tex``): booktabs, the best configuration in bold, its caption's words."""

from __future__ import annotations

import unicodedata

import pandas as pd

from search.results.records import selection_rank
from search.results.setting import setting_words
from search.results.stats import ALPHA, VERDICT_MIN_PAIRS
from search.results.words import (
    dagger_words,
    marks,
    number,
    partial_words,
    present,
    short,
    tied_best,
)
from search.store import schema
from search.study.metrics import METRICS


def summary_latex(summary: pd.DataFrame, name: str, metric: str = "accuracy",
                  comparison: pd.DataFrame | None = None, narrow: bool = False, varied: str | None = None,
                  partial: str | None = None, setting: dict | None = None) -> str:
    """The summary as a LaTeX table (booktabs alone: no siunitx), best first by :func:`selection_rank`.

    The default is a ``table*``, the text's full width in one- and two-column templates,
    with the validation metric where the study has validation rows, and, when
    ``comparison`` is given, the paired difference from the baseline (Δ and its 95%
    interval, in place of the test mean's interval), its Holm-corrected p-value and the
    verdict. ``narrow`` gives a ``table`` that
    fits one column of a two-column template: test mean ± std, Δ and the verdict only.
    ``varied`` (what varied between replicates), ``partial`` (how much of a study not
    complete is stored) and ``setting`` (:func:`search.results.setting.study_setting`: penalty
    convention, epochs, replicates, data, versions, fingerprint) go into the table's note: the
    caption says what the cells and marks are in a few lines.
    """
    m = metric
    label = METRICS[m].latex
    frame = summary.reset_index(drop=True)
    marked = marks(frame, comparison, m)
    diffs = {} if comparison is None else dict(zip(comparison["configuration"], (r for _, r in comparison.iterrows())))
    uneven = frame["n_seeds"].nunique() > 1  # a seeds column only when configurations differ
    validated = schema.mean("validation", m) in frame and not narrow
    rows = [_latex_row(frame.loc[i], marked.get(i, ""), diffs, m, narrow, uneven, validated)
            for i in frame.sort_values([selection_rank(frame, m)]).index]
    if narrow:  # the verdict in place of the p-value it makes redundant for a reader of one column
        columns = "lcc" + ("l" if diffs else "")
        header = rf"Configuration & Test {label} & $\Delta$" + (r" & Verdict" if diffs else "")
    else:
        # With the comparison, Δ's interval takes the place of the test mean's (its paired inference), and
        # the sides of the columns are tight (1.5pt) to fit one column's page; the verdict keeps a gap.
        columns = "l" + "r" * uneven + "c" * validated + ("cc" if diffs else "ccc") + (r"cr@{\hspace{5pt}}l"
                                                                                    if diffs else "")
        header = (rf"Configuration{' & Seeds' * uneven}{' & Valid.' * validated} & Test {label} "
                  + ("" if diffs else r"& 95\% CI ") + "& Train"
                  + (r" & $\Delta$ [95\% CI] & $p_{\mathrm{Holm}}$ & Verdict" if diffs else ""))
    # The caption says what the cells are and what the marks mean, in a few lines; the rest (how the
    # verdicts work, what varied, the setting) is the table's note, under the table in smaller type.
    n_seeds = "" if uneven else f" {int(frame['n_seeds'].iloc[0])}"
    caption = rf"Test {label}, study \texttt{{{_tex_breakable(name)}}}: mean $\pm$ sample std over{n_seeds} seeds"
    if diffs:
        caption += r"; $\Delta$: paired difference from the baseline" + ("" if narrow else r" [95\% CI]")
    if schema.rank("validation", m) in frame:
        chosen = rf"$^\star$ the best mean validation {label} (chosen on validation rows)"
        why = (r"The validation rows are carved out of the training rows; the test columns report the best on "
               "rows that played no part in the choice.")
    else:
        chosen = rf"$^\star$ the best mean test {label}, chosen on the test rows that report it: optimistic"
        why = (r"$^\star$ is chosen on the same test rows that report it, so its test value is optimistic; give "
               "validation rows to choose on others.")
    dagger = (r"$^\dagger$ a verdict of the race, better or worse" if comparison is not None
              and schema.RACE_REASON in comparison else r"$^\dagger$ $p_{\mathrm{Holm}} < " + f"{ALPHA}$")
    caption += f". {chosen}; {dagger}."
    note = [why, "The best result is in bold, with no mark when several configurations share it"
            + (f" (here {' and '.join(_tex(t) for t in tied)})." if len(tied := tied_best(frame, m)) > 1 else ".")]
    note.append(rf"$^\dagger$: {dagger_words(comparison, latex=True)}.")
    if diffs:
        rope = next(iter(diffs.values()))["rope"]
        note.append(rf"Verdict: the difference from the baseline shown beyond a region of practical equivalence of "
                    rf"$\pm{short(rope)}$ (better, worse) or within it (equivalent), else undecided; the chance of "
                    f"any wrong verdict is at most {ALPHA} for independent replicates (studentized bootstrap; no "
                    f"verdict with fewer than {VERDICT_MIN_PAIRS} replicates or no spread).")
    what = [] if narrow or diffs else [r"CI: 95\% Student-t interval of the mean"]
    what += [] if narrow else ["train: on the training rows"]
    what += [f"valid.: mean validation {label}, on which the best is chosen"] if validated else []
    if diffs and not narrow:
        what.append(r"$p$: paired t-test, Holm-corrected" + (
            " (of all its replicates: not adjusted for the race's looks, which the verdicts are)"
            if comparison is not None and schema.RACE_REASON in comparison else ""))
    if varied:
        what.append(f"varied between seeds: {_tex(varied)}")
    if what:
        note.append("; ".join(what)[0].upper() + "; ".join(what)[1:] + ".")
    if partial:  # said first, in the caption too: the ranks and marks cover what is stored alone
        caption = f"Partial study: {_tex(partial)}. " + caption
        note.insert(0, partial_words(partial))
    if setting:
        note.append(_tex(setting_words(setting)))
    env = "table" if narrow else "table*"
    body = "\n".join(rows)
    return (
        "% Requires \\usepackage{booktabs}.\n"
        f"\\begin{{{env}}}[t]\n\\centering\n" + ("\\small\n" if narrow else "\\footnotesize\n")
        + f"\\setlength{{\\tabcolsep}}{{{1.5 if diffs and not narrow else 3}pt}}\n"
        + f"\\caption{{{caption}}}\n"
        f"\\label{{tab:{_tex_label(name)}{'-narrow' if narrow else ''}}}\n"
        f"\\begin{{tabular}}{{{columns}}}\n\\toprule\n{header} \\\\\n\\midrule\n"
        f"{body}\n\\bottomrule\n\\end{{tabular}}\n"
        f"\\par\\smallskip\n{{\\scriptsize\\raggedright {' '.join(note)}\\par}}\n\\end{{{env}}}\n"
    )


def _latex_row(r: pd.Series, marked: str, diffs: dict, m: str, narrow: bool, uneven: bool,
               validated: bool = False) -> str:
    """One configuration's row of :func:`summary_latex`; ``marked`` holds its marks (★, †)."""
    tex_marks = {"★": r"$^{\star}$", "†": r"$^{\dagger}$"}
    config = _tex(r["configuration"]) + "".join(tex_marks[c] for c in marked)
    d = diffs.get(r["configuration"])
    delta = "--" if d is None else f"${_signed(d[schema.mean('test', schema.DIFF)])}$"
    low, high = schema.ci95("low", "test", schema.DIFF), schema.ci95("high", "test", schema.DIFF)
    delta_ci = "" if d is None else f" [${_signed(d[low])}$, ${_signed(d[high])}$]"
    p = "--" if d is None else _tex_p(d["t_pvalue_holm"])
    verdict = "--" if d is None else d["verdict"]
    test = rf"${number(r[schema.mean('test', m)])} \pm {number(r[schema.std('test', m)])}$"
    if r[schema.STATUS_ATTR] != schema.OK:
        span = (2 + bool(diffs)) if narrow else (3 if diffs else 1) + 2 + uneven + validated
        return (rf"{config} & \multicolumn{{{span}}}{{l}}{{diverged on {r['n_diverged']} of "
                f"{r['n_seeds']} seeds}} \\\\")
    extra = [p, verdict] if diffs else []
    if narrow:
        cells = [config, test, delta, *([verdict] if diffs else [])]
    else:
        cells = [config, *([str(r["n_seeds"])] if uneven else []),
                 *([rf"${number(r[schema.mean('validation', m)])}$"] if validated else []),
                 test, *([] if diffs else [_interval(r, m)]),
                 f"${number(r[schema.mean('train', m)])}$"] + ([delta + delta_ci, *extra] if diffs else [])
    if "★" in marked:  # the configuration and its chosen and test results in bold; \boldmath: the math too
        bold = 2 if narrow else 2 + uneven + validated
        cells = [rf"{{\bfseries\boldmath {c}}}" if k < bold else c for k, c in enumerate(cells)]
    return " & ".join(cells) + r" \\"


def _interval(r: pd.Series, m: str) -> str:
    """The 95% interval of a configuration's mean test metric, as the table prints it."""
    return f"[{number(r[schema.ci95('low', 'test', m)])}, {number(r[schema.ci95('high', 'test', m)])}]"


def _signed(v) -> str:
    """Δ or a bound of its interval, always signed (as the Markdown tables write them); 0 unsigned."""
    if not present(v):
        return "--"
    text = f"{float(v):+.3f}"
    return text[1:] if float(text) == 0 else text  # no "-0.000"


def _tex_p(v) -> str:
    if not present(v):
        return "--"
    return f"${v:.2g}$" if v >= 0.001 else "$<0.001$"


def _tex_breakable(name: str) -> str:
    """``name`` for \\texttt, which never hyphenates: a line may break after each "-" or "_"."""
    return _tex(name).replace("-", "-\\allowbreak{}").replace("\\_", "\\_\\allowbreak{}")


def _tex_label(name: str) -> str:
    """``name`` as a LaTeX \\label key (letters, digits, - and : only)."""
    return "".join(c if (c.isascii() and c.isalnum()) or c in "-:" else "-" for c in name)


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                # In text mode OT1 fonts print < and > as ¡ and ¿.
                "<": r"\ensuremath{<}", ">": r"\ensuremath{>}"}


_TEX_GREEK_CAPITALS = {"GAMMA", "DELTA", "THETA", "LAMDA", "XI", "PI", "SIGMA", "UPSILON", "PHI", "PSI", "OMEGA"}


_GREEK_AS_LATIN = {"ALPHA": "A", "BETA": "B", "EPSILON": "E", "ZETA": "Z", "ETA": "H", "IOTA": "I", "KAPPA": "K",
                   "MU": "M", "NU": "N", "RHO": "P", "TAU": "T", "CHI": "X"}


_TEX_ACCENTS = {"\u0301": "'", "\u0300": "`", "\u0302": "^", "\u0308": '"', "\u0303": "~", "\u0327": "c",
                "\u030c": "v", "\u0304": "="}


def _tex(text: str) -> str:
    """``text`` as LaTeX that plain pdflatex compiles: its special characters escaped, Greek
    letters in math mode, accented Latin letters as accent commands; any other character
    that pdflatex's fonts lack becomes "?" (the Markdown and CSV outputs keep it)."""
    parts = text.split(">=")  # "Keras >= 3.14" typeset as a relation, not two characters
    return r"$\geq$".join("".join(_TEX_SPECIAL.get(c) or (c if c.isascii() else _tex_char(c)) for c in part)
                          for part in parts)


def _tex_char(c: str) -> str:

    name = unicodedata.name(c, "")
    if name.startswith(("GREEK SMALL LETTER ", "GREEK CAPITAL LETTER ")) and len(name.split()) == 4:
        letter = name.split()[-1]
        small = "SMALL" in name
        if letter == "OMICRON":
            return "o" if small else "O"
        if not small and letter not in _TEX_GREEK_CAPITALS:
            return _GREEK_AS_LATIN.get(letter, "?")
        command = {"LAMDA": "lambda"}.get(letter, letter.lower())
        return f"\\ensuremath{{\\{command if small else command.capitalize()}}}"
    decomposed = unicodedata.normalize("NFD", c)
    base, marks = decomposed[0], decomposed[1:]
    if base.isascii() and base.isalpha() and len(marks) == 1 and marks[0] in _TEX_ACCENTS:
        return f"\\{_TEX_ACCENTS[marks[0]]}{{{base}}}"
    return "?"
