"""What people see: terminal charts (`charts`), PNG figures (`figures`), the Markdown report
(`report`), the study comparison (`compare`), progress lines and bars (`progress`), and the one
table of how states look (`states`), shared by the CLI and the console."""
