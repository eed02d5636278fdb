"""Reward: is a response's last \\boxed{} answer equal to the ground truth?

    verifier.py  the verifier: string and exact number checks, then math-verify
    client.py    the client of this process's warm, killable math-verify helper
    helper.py    the helper itself (`python -m treerpo.reward.helper`)
    cases.py     answers only math-verify can judge, with their verdicts (load test, benchmark)
"""
