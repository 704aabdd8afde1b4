from bench.cli.main import app

app(prog_name="bench")
