"""A small Tk window for the desktop tests (run as a program: tk_app.py LOGFILE).

It shows a big label to read with OCR, an entry to type into and a button to click, and
appends what happens to LOGFILE.
"""

import json
import sys
import tkinter as tk

LOG = sys.argv[1]


def log(line: str) -> None:
    with open(LOG, "a") as out:
        out.write(line + "\n")


root = tk.Tk()
root.geometry("+0+0")
root.configure(bg="white")
label = tk.Label(root, text="OPENPISTA 42", font=("DejaVu Sans", 40), bg="white", fg="black")
label.pack(padx=30, pady=20)
entry = tk.Entry(root, font=("DejaVu Sans", 20), width=20)
entry.pack(padx=30, pady=10)
entry.bind("<Return>", lambda event: log("submitted " + entry.get()))
button = tk.Button(root, text="Press", font=("DejaVu Sans", 20))
button.configure(command=lambda: log("clicked " + entry.get()))
button.bind("<Enter>", lambda event: log("hover"), add="+")
button.pack(pady=10)


def centre(widget: tk.Widget) -> list[int]:
    return [
        widget.winfo_rootx() + widget.winfo_width() // 2,
        widget.winfo_rooty() + widget.winfo_height() // 2,
    ]


def ready() -> None:
    root.update_idletasks()
    log(
        "ready "
        + json.dumps({"label": centre(label), "entry": centre(entry), "button": centre(button)})
    )


root.after(300, ready)
root.mainloop()
