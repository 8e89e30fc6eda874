"""ONFHSegmentation: one click from a loaded hip MRI to editable femoral head and necrosis segments.

A thin Qt shell. The model runs in a child process (``PythonSlicer -m onfh segment``,
``onfh.subprocess_runner``) that a QTimer polls, so the GUI never freezes and Cancel
kills the whole process tree. Results enter the scene through ``onfh.mrml.
segmentation_import`` (new node, never replacing an edited segment); "Add to training
set" goes through ``onfh.mrml.training_export``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pathlib
import sys
import tempfile
import time
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# The engine lives beside the modules (installed extension) or one level up (checkout).
_HERE = os.path.dirname(os.path.abspath(__file__))
ENGINE_ROOT = _HERE
for _root in (os.path.dirname(_HERE), _HERE):
    if os.path.isdir(os.path.join(_root, "onfh")):
        ENGINE_ROOT = _root
        if _root not in sys.path:
            sys.path.insert(0, _root)

from onfh.errors import OnfhError
from onfh.mrml.segmentation_import import (
    ImportChoice,
    import_segmentation,
    plan_import,
    read_model_info,
    volume_to_image,
)
from onfh.mrml.training_export import export_training_case, plan_case_id
from onfh.sampledata import SAMPLE_CATEGORY, SAMPLE_NAME, SAMPLE_NODE_NAME, sample_files, synthetic_hip
from onfh.subprocess_runner import (
    CHILD_REQUIREMENTS,
    SHIPPED_MODEL,
    SegmentJob,
    find_python_slicer,
    missing_modules,
    pip_constraints,
    pip_install_arguments,
)

POLL_INTERVAL_MS = 200


class ONFHSegmentation(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "ONFH Segmentation"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["ONFH extension developers"]
        self.parent.helpText = (
            "Segments the femoral head and the necrotic lesion of a 3D hip MRI into editable "
            "segments; ONFH Grading then shows the Steinberg extent grade live as you edit."
        )
        self.parent.acknowledgementText = (
            "Method after Uemura et al., J Arthroplasty 2025. Research software: not for clinical decisions."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)
        slicer.app.connect("startupCompleted()", registerTerminology)


def registerTerminology() -> None:
    """Load our terminology context so the segments' SNOMED CT codes show in the editor."""
    path = os.path.join(ENGINE_ROOT, "Resources", "Terminology", "ONFH.term.json")
    if os.path.isfile(path) and hasattr(slicer.modules, "terminologies"):
        slicer.modules.terminologies.logic().LoadTerminologyFromFile(path)


def registerSampleData() -> None:
    """Add "Synthetic ONFH hip" to Sample Data; it is generated locally, never downloaded."""
    import SampleData

    cache = slicer.mrmlScene.GetCacheManager().GetRemoteCacheDirectory()
    fileName = sample_files(cache).image_path.name
    # Only the Sample Data button calls customDownloader; scripted SampleData.downloadSample never
    # does (downloadFromSource in Modules/Scripted/SampleData/SampleData.py): use loadSyntheticHip().
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=SAMPLE_CATEGORY,
        sampleName=SAMPLE_NAME,
        uris="onfh-synthetic:" + fileName,  # never fetched: customDownloader generates the file
        fileNames=fileName,
        nodeNames=SAMPLE_NODE_NAME,
        thumbnailFileName=os.path.join(_HERE, "Resources", "Icons", "ONFHSegmentation.png"),
        loadFileTypes="VolumeFile",
        customDownloader=loadSyntheticHip,
    )


def loadSyntheticHip(source=None):
    """Generate the sample on first use (about ten seconds) and load it; scripts call this too."""
    cache = slicer.mrmlScene.GetCacheManager().GetRemoteCacheDirectory()
    with slicer.util.tryWithErrorDisplay("Could not generate the synthetic hip.", waitCursor=True):
        files = synthetic_hip(cache)
        return slicer.util.loadVolume(str(files.image_path), {"name": SAMPLE_NODE_NAME})


@parameterNodeWrapper
class ONFHSegmentationParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    device: Annotated[str, Choice(["Auto", "CPU", "GPU"])] = "Auto"
    # "shipped" (SHIPPED_MODEL), not the absolute path of the shipped model, which goes
    # stale after an extension update or on another machine.
    modelFolder: pathlib.Path = pathlib.Path(SHIPPED_MODEL)
    segmentation: vtkMRMLSegmentationNode
    datasetFolder: pathlib.Path


class ONFHSegmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ONFHSegmentation.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = ONFHSegmentationLogic()

        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._poll)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.addToTrainingSetButton.connect("clicked(bool)", self.onAddToTrainingSetButton)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()
        self._stopJob(cancel=True)

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        # Keep the parameter node and the poll timer: a running job finishes, and its result
        # is loaded and handed to ONFH Grading, while the user works in another module.
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        self._stopJob(cancel=True)
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        node = self._parameterNode
        if not node.inputVolume:
            node.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if str(node.modelFolder) in ("", ".") or node.modelFolder == self.logic.shippedModelFolder():
            node.modelFolder = pathlib.Path(SHIPPED_MODEL)
        if str(node.datasetFolder) in ("", "."):
            node.datasetFolder = pathlib.Path.home() / "ONFH-training-set"

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            if self._parameterNodeGuiTag is not None:
                self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
                self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._updateButtons()

    def _updateButtons(self, caller=None, event=None) -> None:
        node = self._parameterNode
        running = self._job is not None
        self.ui.segmentButton.enabled = bool(node and node.inputVolume) and not running
        self.ui.cancelButton.enabled = running
        self.ui.addToTrainingSetButton.enabled = bool(node and node.segmentation) and not running

    # --- Segment ----------------------------------------------------------------------

    def onSegmentButton(self) -> None:
        if not self.ensureDependencies():
            return
        node = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Could not start the segmentation.", waitCursor=True):
            self._job = self.logic.startSegmentation(node.inputVolume, node.modelFolder, node.device)
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = f"Segmenting {node.inputVolume.GetName()}..."
            self._timer.start()
        self._updateButtons()

    def _poll(self) -> None:
        if self._job is None:
            self._timer.stop()
            return
        for event in self._job.process.poll():
            if event.fraction is not None:
                self.ui.progressBar.value = round(100 * event.fraction)
            self.ui.statusLabel.text = event.text + "..."
        if self._job.process.finished:
            job = self._job
            self._stopJob(cancel=False)
            self._finish(job)

    def _finish(self, job) -> None:
        try:
            if job.process.returncode != 0:
                self.ui.statusLabel.text = "Segmentation failed: " + job.process.error_message()
                logging.error("onfh segment failed:\n" + "\n".join(job.process.stderr_lines))
                return
            if job.volume.GetScene() is None:
                self.ui.statusLabel.text = "The volume was removed; the result was discarded."
                return
            decision = plan_import(slicer.mrmlScene, job.volume)
            choice = self._askImportChoice(decision) if decision.needs_question else ImportChoice.NEW_NODE
            with slicer.util.tryWithErrorDisplay("Could not load the segmentation.", waitCursor=True):
                outcome = self.logic.importResult(job, decision, choice)
                if outcome is None:
                    self.ui.statusLabel.text = "Result discarded; the scene is unchanged."
                    return
                # From the logic, not self._parameterNode: the user may be in another module.
                self.logic.getParameterNode().segmentation = outcome.segmentation_node
                self.logic.showInGrading(outcome.segmentation_node)
                kept = f" Kept your edited: {', '.join(outcome.kept)}." if outcome.kept else ""
                self.ui.progressBar.value = 100
                name = outcome.segmentation_node.GetName()
                warning = job.quality_warning()
                notes = "".join(f" {text}." for text in (job.result_text(), warning) if text)
                self.ui.statusLabel.text = f"Done: '{name}'.{kept}{notes}"
            if warning:
                slicer.util.warningDisplay(
                    f"{warning}.\nCheck the segments of '{name}' before using the grade.",
                    windowTitle="ONFH Segmentation",
                )
        finally:
            job.cleanup()
            self._updateButtons()

    def _askImportChoice(self, decision) -> ImportChoice:
        box = qt.QMessageBox(slicer.util.mainWindow())
        box.setWindowTitle("ONFH Segmentation")
        box.setIcon(qt.QMessageBox.Question)
        box.setText(decision.question())
        buttons = [(box.addButton(c.label, qt.QMessageBox.ActionRole), c) for c in decision.choices]
        box.setEscapeButton(buttons[-1][0])  # choices end with CANCEL
        box.exec_()
        clicked = box.clickedButton()
        return next((choice for button, choice in buttons if button == clicked), ImportChoice.CANCEL)

    def onCancelButton(self) -> None:
        self._stopJob(cancel=True)
        self.ui.progressBar.value = 0
        self.ui.statusLabel.text = "Cancelled; the scene is unchanged."
        self._updateButtons()

    def _stopJob(self, cancel: bool) -> None:
        self._timer.stop()
        job, self._job = self._job, None
        if job is not None and cancel:
            job.process.cancel()
            job.cleanup()

    def ensureDependencies(self) -> bool:
        """Offer to install onnxruntime on first use; never touch numpy, SimpleITK, vtk."""
        missing = self.logic.missingPackages()
        if not missing:
            return True
        question = (
            f"ONFH Segmentation needs the Python package {' and '.join(missing)} to run the model. "
            "Install it now?\nSlicer's own numpy, SimpleITK and VTK are kept as they are."
        )
        if not slicer.util.confirmOkCancelDisplay(question, windowTitle="Install dependencies"):
            return False
        with slicer.util.tryWithErrorDisplay("Installing dependencies failed.", waitCursor=True):
            self.logic.installPackages(missing)
        return not self.logic.missingPackages()

    # --- Add to training set ------------------------------------------------------------

    def onAddToTrainingSetButton(self) -> None:
        node = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Could not add the case.", waitCursor=True):
            role = node.segmentation.GetReferenceImageGeometryReferenceRole()
            volume = node.segmentation.GetNodeReference(role) or node.inputVolume
            if volume is None:
                raise ValueError("The segmentation has no reference volume; select the MRI as input.")
            plan = plan_case_id(node.datasetFolder, volume)
            caseId = plan.case_id
            if plan.exists:
                question = (
                    f"Case '{plan.case_id}' is already in the training set and is never overwritten.\n"
                    f"Add this segmentation as a new case '{plan.free_alternative}'?"
                )
                if not slicer.util.confirmOkCancelDisplay(question, windowTitle="Add to training set"):
                    return
                caseId = plan.free_alternative
            files = export_training_case(
                slicer.mrmlScene, node.segmentation, volume, node.datasetFolder, caseId
            )
            self.ui.statusLabel.text = f"Added case '{files.case_id}' to {node.datasetFolder}."


class ONFHSegmentationLogic(ScriptedLoadableModuleLogic):
    """Facade over ``onfh`` for the widget, scripts and the self test."""

    def getParameterNode(self):
        return ONFHSegmentationParameterNode(super().getParameterNode())

    @staticmethod
    def shippedModelFolder() -> pathlib.Path | None:
        from onfh.modelfolder import default_model_dir

        try:
            return default_model_dir()
        except OnfhError:
            return None

    @staticmethod
    def pythonExecutable() -> str:
        """Slicer's own Python launcher (``PythonSlicer``), so the child sees Slicer's packages."""
        return find_python_slicer(sys.executable)

    def startSegmentation(self, volumeNode, modelFolder=None, device: str = "Auto") -> SegmentJob:
        """Write the volume to a temporary file and start ``onfh segment`` on it (returns at once)."""
        image = volume_to_image(volumeNode)
        job = SegmentJob(image, self.pythonExecutable(), ENGINE_ROOT, modelFolder, device)
        job.volume = volumeNode
        return job

    def importResult(self, job: SegmentJob, decision, choice: ImportChoice):
        """Load a finished job's ``.seg.nrrd`` into the scene as ``choice`` says."""
        model = read_model_info(job.report_path) if job.report_path.is_file() else None
        return import_segmentation(slicer.mrmlScene, job.volume, job.seg_path, model, decision, choice)

    @staticmethod
    def showInGrading(segmentationNode) -> None:
        """Point ONFH Grading at the new node: graded when its panel opens, then live as it is edited."""
        grading = getattr(slicer.modules, "onfhgrading", None)
        if grading is None:
            logging.warning("ONFH Grading module not found; the grade is not shown")
            return
        grading.widgetRepresentation().self().setSegmentationNode(segmentationNode)

    @staticmethod
    def missingPackages() -> list[str]:
        """What segmenting needs and this Python lacks (onnxruntime; torch is never required)."""
        return missing_modules(CHILD_REQUIREMENTS)

    @staticmethod
    def installPackages(packages) -> None:
        """pip-install ``packages`` (a list) with constraints pinning Slicer's numpy and SimpleITK.

        ``slicer.packaging`` (5.12+) is a submodule ``import slicer`` does not load: look it up."""
        packages = [str(p) for p in packages]
        with tempfile.TemporaryDirectory() as folder:
            constraints = os.path.join(folder, "constraints.txt")
            with open(constraints, "w") as f:
                f.write(pip_constraints())
            if importlib.util.find_spec("slicer.packaging") is not None:
                import slicer.packaging

                slicer.packaging.pip_install(packages, constraints=constraints, requester="ONFH Segmentation")
            else:
                slicer.util.pip_install(pip_install_arguments(packages, constraints))


class ONFHSegmentationTest(ScriptedLoadableModuleTest):
    """In-Slicer flow on the synthetic sample; the logic it calls is covered by pytest."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        logic = ONFHSegmentationLogic()
        if logic.missingPackages() or logic.shippedModelFolder() is None:
            self.delayDisplay("Skipped: onnxruntime or the shipped model is not installed")
            return
        for test in (self.test_synthetic_hip_flow, self.test_result_arrives_while_in_another_module):
            self.setUp()
            test()

    def test_synthetic_hip_flow(self) -> None:
        logic = ONFHSegmentationLogic()
        volume = loadSyntheticHip()
        job = logic.startSegmentation(volume, None, "Auto")
        try:
            self.assertEqual(job.process.wait(timeout_s=600), 0, job.process.error_message())
            self.assertTrue(any(e.stage for e in job.process.poll()))
            outcome = logic.importResult(job, plan_import(slicer.mrmlScene, volume), ImportChoice.NEW_NODE)
        finally:
            job.cleanup()
        node = outcome.segmentation_node
        self.assertEqual(outcome.added, ["Femoral head", "Necrosis"])
        self.assertTrue(plan_import(slicer.mrmlScene, volume).needs_question)
        from onfh.mrml.grading import compute_grade

        self.assertIn(compute_grade(node).grade, ("A", "B", "C"))
        with tempfile.TemporaryDirectory() as folder:
            files = export_training_case(slicer.mrmlScene, node, volume, folder)
            self.assertTrue(files.label_path.is_file())
        self.delayDisplay("ONFHSegmentation test passed")

    def test_result_arrives_while_in_another_module(self) -> None:
        """Issue 11 item 2: leaving the panel mid-run still loads the result and hands it over."""
        logic = ONFHSegmentationLogic()
        volume = loadSyntheticHip()
        slicer.util.selectModule("ONFHSegmentation")
        widget = slicer.util.getModuleWidget("ONFHSegmentation")
        logic.getParameterNode().inputVolume = volume
        widget.onSegmentButton()
        slicer.util.selectModule("Data")
        deadline = time.monotonic() + 600
        while widget._job is not None and time.monotonic() < deadline:
            slicer.app.processEvents()
            time.sleep(0.05)
        node = logic.getParameterNode().segmentation
        self.assertIsNotNone(node, widget.ui.statusLabel.text)
        self.assertIs(slicer.util.getModuleWidget("ONFHGrading")._parameterNode.segmentation, node)
        self.delayDisplay("ONFHSegmentation hand-over test passed")
