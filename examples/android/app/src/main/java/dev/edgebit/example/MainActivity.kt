package dev.edgebit.example

import android.app.Activity
import android.graphics.Typeface
import android.os.Bundle
import android.system.Os
import android.widget.ScrollView
import android.widget.TextView
import org.json.JSONObject
import java.io.File
import java.util.Locale
import kotlin.concurrent.thread

/**
 * Runs an edgebit bundle's device runner inside the app and shows (a) the on-device validation against the host's
 * reference logits and (b) a greedy continuation of the first reference row, decoded with tokenizer.json.
 *
 * The app's files come from `edgebit android-layout BUNDLE app/src/main`: the loader, the runner and every library
 * as jniLibs/arm64-v8a/lib*.so (extracted into nativeLibraryDir, the only place the app may execute from), and
 * assets/edgebit/ (app.json, links.txt, the runner's directory runtime/, reference/, tokenizer.json).
 */
class MainActivity : Activity() {
    private lateinit var output: TextView

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        output = TextView(this).apply { typeface = Typeface.MONOSPACE; setPadding(32, 32, 32, 32) }
        setContentView(ScrollView(this).apply { addView(output) })
        thread {
            try {
                runBundle()
            } catch (e: Exception) {
                show("error: ${e.message}")
            }
        }
    }

    private fun show(line: String) = runOnUiThread { output.append(line + "\n") }

    private fun runBundle() {
        val root = File(filesDir, "edgebit")
        installAssets(root)
        val app = JSONObject(File(root, "app.json").readText())
        createLinks(root, File(root, app.getString("links")))
        show("runtime ${app.getString("runtime")} (${app.getString("family")}, target ${app.getString("target")})")

        // (a) validation: the reference inputs through the runner, compared with the host's logits.
        val inputs = File(root, app.getString("reference_inputs"))
        val logitsFile = File(cacheDir, "logits.npy")
        val started = System.nanoTime()
        runRunner(app, root, "logits", inputs.path, logitsFile.path)
        val seconds = (System.nanoTime() - started) / 1e9
        val reference = Npy.read(File(root, app.getString("reference_logits")))
        val logits = Npy.read(logitsFile)
        require(logits.shape.contentEquals(reference.shape)) {
            "the runner wrote ${logits.shape.toList()}, the reference is ${reference.shape.toList()}"
        }
        val agreement = Agreement.compare(logits.floats(), reference.floats(), reference.shape.last(),
                                          app.optDouble("rounding_noise", 0.0))
        val verdict = if (agreement.passed) "PASS" else "FAIL"
        show(String.format(Locale.ROOT, "%s in %.1f s: %s", verdict, seconds, agreement.describe()))

        // (b) generation: greedy continuation of the first reference row.
        val ids = Npy.read(inputs)
        val prompt = ids.longs().copyOfRange(0, ids.shape[1])
        val newTokens = minOf(32, app.getInt("max_seq_len") - prompt.size)
        if (newTokens <= 0 || app.isNull("tokenizer")) return
        val promptFile = File(cacheDir, "prompt.npy")
        val generatedFile = File(cacheDir, "generated.npy")
        Npy.writeLongs(promptFile, intArrayOf(1, prompt.size), prompt)
        runRunner(app, root, "generate", promptFile.path, newTokens.toString(), generatedFile.path)
        val decoder = ByteLevelDecoder(File(root, app.getString("tokenizer")))
        show("prompt: " + decoder.decode(prompt))
        show("generated: " + decoder.decode(Npy.read(generatedFile).longs()))
    }

    /** Copies assets/edgebit to filesDir/edgebit once per installed version of the app. */
    private fun installAssets(root: File) {
        val version = packageManager.getPackageInfo(packageName, 0).lastUpdateTime.toString()
        val stamp = File(filesDir, "edgebit.installed")
        if (root.isDirectory && stamp.isFile && stamp.readText() == version) return
        show("copying the bundle's files ...")
        root.deleteRecursively()
        copyAsset("edgebit", root)
        stamp.writeText(version)
    }

    private fun copyAsset(path: String, to: File) {
        val children = assets.list(path).orEmpty()
        if (children.isEmpty()) {
            to.parentFile?.mkdirs()
            assets.open(path).use { input -> to.outputStream().use { input.copyTo(it) } }
        } else {
            children.forEach { copyAsset("$path/$it", File(to, it)) }
        }
    }

    /**
     * links.txt: "LINK RENAMED" lines. LINK (relative to the copy: links/<soname>, or a file the runner opens by
     * path such as runtime/model.so) becomes a symlink to nativeLibraryDir/RENAMED, so the loader finds every
     * library by its soname while the code it maps comes from nativeLibraryDir.
     */
    private fun createLinks(root: File, linksTxt: File) {
        val native = applicationInfo.nativeLibraryDir
        for (line in linksTxt.readLines().filter { it.isNotBlank() }) {
            val (link, renamed) = line.trim().split(Regex("\\s+"), limit = 2)
            val file = File(root, link)
            file.parentFile?.mkdirs()
            file.delete()
            Os.symlink("$native/$renamed", file.path)
        }
    }

    /**
     * `loader --library-path LINKS runner RUNTIME_DIR ARGS...`, everything executable from nativeLibraryDir.
     * TMPDIR: Android has no /tmp. GLIBC_TUNABLES: the app's seccomp filter kills the rseq syscall that glibc
     * would register for every thread.
     */
    private fun runRunner(app: JSONObject, root: File, vararg args: String): String {
        val native = applicationInfo.nativeLibraryDir
        val command = listOf("$native/${app.getString("loader")}", "--library-path",
                             File(root, app.getString("library_path")).path, "$native/${app.getString("runner")}",
                             File(root, app.getString("runtime_dir")).path) + args
        val builder = ProcessBuilder(command).directory(root).redirectErrorStream(true)
        builder.environment().apply {
            remove("LD_LIBRARY_PATH")  // Bionic's libraries must never reach glibc's loader
            remove("LD_PRELOAD")
            put("TMPDIR", cacheDir.path)
            put("GLIBC_TUNABLES", "glibc.pthread.rseq=0")
        }
        val process = builder.start()
        val text = process.inputStream.bufferedReader().readText()
        val status = process.waitFor()
        if (status != 0) {
            val last = text.lines().lastOrNull { it.isNotBlank() } ?: "no output"
            throw IllegalStateException("the runner exited with status $status: $last")
        }
        return text
    }
}
