"""The command line: ``python -m lstm_core train | evaluate | generate | export | plays``.

main.py         the parser and every command
"""
