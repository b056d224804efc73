"""The F2LLM-v2 family in one pipeline: the teacher's two stages, then every student pruned from
the stage-1 teacher and trained through stage 2 with the distillation term from the stage-2
teacher (recipe: 80M/160M/330M from the stage-1 0.6B, taught by the 0.6B), evaluated beside the
teacher in one per-language table, and each exported.

    data stages -> teacher stage 1 -> teacher stage 2 ---------------------------+
                        |                       |                                 |
                        +-> for each student: prune -> train-student (KD) -> export-student
                                                            |                     |
                                   evaluate-family (teacher + every student) -> export (teacher)
"""

from f2llm.components.pipeline import FRONT_STAGES, StageNamer, data_and_teacher
from f2llm.components.stages import (
    evaluate_family_op,
    export_op,
    export_student_op,
    family_students_op,
    prune_op,
    train_student_op,
)
from f2llm.config import ClusterConfig
from kfp import dsl

STAGES = FRONT_STAGES + ("family-students", "prune", "train-student", "export-student", "evaluate-family", "export")


def build_family_pipeline(cluster: ClusterConfig | None = None):
    on_cluster = StageNamer(cluster)

    @dsl.pipeline(name="f2llm-v2-family", description="F2LLM-v2: a teacher and its pruned, distilled students")
    def f2llm_family(config_json: str):
        front = data_and_teacher(config_json, on_cluster)
        accepted, teacher_stage1, teacher = front.accepted, front.stage1.outputs["model"], front.stage2.outputs["model"]
        students = on_cluster(family_students_op(config_json=config_json), "family-students")
        with dsl.ParallelFor(students.output, parallelism=4) as student:
            pruned = on_cluster(prune_op(
                config_json=config_json, student=student, init_model=teacher_stage1, accepted=accepted,
            ), "prune")
            trained = on_cluster.on_train_node(train_student_op(  # students fit a node (DDP): `f2llm plan`
                config_json=config_json, student=student, dataset=front.prepare.outputs["dataset"],
                init_model=pruned.outputs["model"], teacher_model=teacher, processes=on_cluster.processes,
            ), "train-student")
            on_cluster(export_student_op(
                config_json=config_json, student=student, trained_model=trained.outputs["model"],
            ), "export-student")
        evaluate = on_cluster(evaluate_family_op(
            config_json=config_json, accepted=accepted, teacher_model=teacher,
            student_models=dsl.Collected(trained.outputs["model"]),
        ), "evaluate-family")
        on_cluster(export_op(
            config_json=config_json, trained_model=teacher, results=evaluate.outputs["results"],
            report=evaluate.outputs["report"], validation_report=front.validation.outputs["report"],
            validation_summary=front.validation.outputs["per_language"],
        ), "export")

    return f2llm_family
