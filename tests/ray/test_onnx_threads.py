"""onnxruntime's threads follow the CPUs Ray gives the actor or task a pipeline runs in."""

import pytest
from exports import TINY_FAST_STYLE, make_export

pytestmark = pytest.mark.ray


def test_threads_follow_the_cpus_of_the_actor_or_task(ray_local, tmp_path):
    export = make_export(tmp_path, "fast_style", TINY_FAST_STYLE)

    @ray_local.remote
    class Styler:
        def threads(self, path: str) -> tuple[int, int]:
            from genart.pipelines.style import FastStylePipeline

            pipe = FastStylePipeline.from_export(path, "cpu")
            options = pipe.onnx["G"].session.get_session_options()
            return pipe.describe()["threads"], options.intra_op_num_threads

    @ray_local.remote(num_cpus=1)
    def task_threads() -> int:
        from genart import onnx_export

        return onnx_export.intra_op_threads()

    two = Styler.options(num_cpus=2).remote()
    share = Styler.options(num_cpus=0.25).remote()  # a Serve replica's share: one thread
    assert ray_local.get(two.threads.remote(export)) == (2, 2)
    assert ray_local.get(share.threads.remote(export)) == (1, 1)
    assert ray_local.get(task_threads.remote()) == 1
