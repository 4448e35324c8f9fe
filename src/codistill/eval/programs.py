"""Test programs, assembled exactly as the reference harnesses assemble them."""


def humaneval_program(problem: dict, completion: str) -> str:
    """HumanEval (openai/human-eval): prompt + completion, then the tests and `check(entry_point)`."""
    return f"{problem['prompt']}{completion}\n{problem['test']}\ncheck({problem['entry_point']})"


def infilling_program(task: dict, middle: str) -> str:
    """HumanEval-Infilling (openai/human-eval-infilling): prompt + middle + suffix, tests, check."""
    return f"{task['prompt']}{middle}{task['suffix']}\n{task['test']}\ncheck({task['entry_point']})"
