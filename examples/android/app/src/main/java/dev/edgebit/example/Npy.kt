package dev.edgebit.example

import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** A .npy array (format 1.0 or 2.0, C order) of little-endian int64 ("<i8") or float32 ("<f4"). */
class NpyArray(val descr: String, val shape: IntArray, private val data: ByteBuffer) {
    val size: Int get() = shape.fold(1) { a, b -> a * b }

    fun longs(): LongArray {
        require(descr == "<i8") { "expected <i8, got $descr" }
        return LongArray(size).also { data.duplicate().order(ByteOrder.LITTLE_ENDIAN).asLongBuffer().get(it) }
    }

    fun floats(): FloatArray {
        require(descr == "<f4") { "expected <f4, got $descr" }
        return FloatArray(size).also { data.duplicate().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(it) }
    }
}

object Npy {
    private val MAGIC = byteArrayOf(0x93.toByte(), 'N'.code.toByte(), 'U'.code.toByte(), 'M'.code.toByte(),
                                    'P'.code.toByte(), 'Y'.code.toByte())

    fun read(file: File): NpyArray {
        val bytes = ByteBuffer.wrap(file.readBytes()).order(ByteOrder.LITTLE_ENDIAN)
        val magic = ByteArray(6).also { bytes.get(it) }
        require(magic.contentEquals(MAGIC)) { "$file is not a .npy file" }
        val major = bytes.get().toInt()
        bytes.get()  // minor version
        val headerLength = if (major == 1) bytes.short.toInt() and 0xffff else bytes.int
        val header = String(ByteArray(headerLength).also { bytes.get(it) }, Charsets.ISO_8859_1)
        require(!header.contains("'fortran_order': True")) { "$file: Fortran order is not supported" }
        val descr = Regex("'descr':\\s*'([^']+)'").find(header)?.groupValues?.get(1)
            ?: error("$file: no descr in the header")
        val dims = Regex("'shape':\\s*\\(([^)]*)\\)").find(header)?.groupValues?.get(1)
            ?: error("$file: no shape in the header")
        val shape = dims.split(',').map { it.trim() }.filter { it.isNotEmpty() }.map { it.toInt() }.toIntArray()
        return NpyArray(descr, shape, bytes.slice())
    }

    /** Writes int64 [shape] as "<i8" (what the runner reads as token ids). */
    fun writeLongs(file: File, shape: IntArray, values: LongArray) {
        val dims = shape.joinToString(", ") + if (shape.size == 1) "," else ""
        var header = "{'descr': '<i8', 'fortran_order': False, 'shape': ($dims), }"
        header += " ".repeat((64 - (10 + header.length + 1) % 64) % 64) + "\n"
        val out = ByteBuffer.allocate(10 + header.length + 8 * values.size).order(ByteOrder.LITTLE_ENDIAN)
        out.put(MAGIC).put(1.toByte()).put(0.toByte()).putShort(header.length.toShort()).put(header.toByteArray(Charsets.ISO_8859_1))
        values.forEach { out.putLong(it) }
        file.writeBytes(out.array())
    }
}
